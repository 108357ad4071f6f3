package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// FieldManager is who install's server-side applies are from.
const FieldManager = "tether"

// Apply applies objs with server-side apply, in order; say hears each.
func Apply(ctx context.Context, dyn dynamic.Interface, objs []runtime.Object, say func(string)) error {
	us, err := Unstructured(objs)
	if err != nil {
		return err
	}
	for _, u := range us {
		gvr, err := GVR(u)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if u.GetNamespace() != "" {
			ri = dyn.Resource(gvr).Namespace(u.GetNamespace())
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			if apierrors.IsForbidden(err) {
				return fmt.Errorf("applying %s: %w: installing the operator takes cluster-admin rights (it makes ClusterRoles and an APIService)", Describe(u), err)
			}
			return fmt.Errorf("applying %s: %w", Describe(u), err)
		}
		if say != nil {
			say(Describe(u))
		}
	}
	return nil
}

// Remove deletes what Objects(o) made, the APIService first (the API
// server stops sending requests to the operator) and its namespace last,
// waiting until it is gone with everything in it (the operator, its
// agents, its certificate). Objects already gone are fine.
func Remove(ctx context.Context, dyn dynamic.Interface, o Options, say func(string)) error {
	o.defaults()
	if o.Image == "" {
		o.Image = "unused"
	}
	if o.AgentImage == "" {
		o.AgentImage = "unused"
	}
	if err := removeSplits(ctx, dyn, say); err != nil {
		return err
	}
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	us, err := Unstructured(objs)
	if err != nil {
		return err
	}
	// Reverse order: the APIService, the Deployment..., the namespace.
	var errs []error
	bg := metav1.DeletePropagationBackground
	for i := len(us) - 1; i >= 0; i-- {
		u := us[i]
		gvr, err := GVR(u)
		if err != nil {
			return err
		}
		ri := resource(dyn, gvr, u)
		err = ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("deleting %s: %w", Describe(u), err))
			continue
		}
		if say != nil {
			say(Describe(u))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Wait for every object, the namespace's content included.
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, u := range us {
			gvr, _ := GVR(u)
			if _, err := resource(dyn, gvr, u).Get(ctx, u.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
}

func resource(dyn dynamic.Interface, gvr schema.GroupVersionResource, u *unstructured.Unstructured) dynamic.ResourceInterface {
	if u.GetNamespace() != "" {
		return dyn.Resource(gvr).Namespace(u.GetNamespace())
	}
	return dyn.Resource(gvr)
}
