package apiserver

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/tether-dev/tether/api/v1alpha1"
)

// Backend is what the API's resources are made of (internal/operator).
type Backend interface {
	Targets(ctx context.Context, ns string) ([]v1alpha1.Target, error)
	Target(ctx context.Context, ns, name string) (*v1alpha1.Target, error)
	Connect(ctx context.Context, u user.Info, ns, name string, opts *v1alpha1.TargetConnectOptions) (http.Handler, error)
	Sessions(ctx context.Context, ns string) ([]v1alpha1.Session, error)
	Session(ctx context.Context, ns, name string) (*v1alpha1.Session, error)
	Kill(ctx context.Context, by user.Info, ns, name string) (*v1alpha1.Session, error)
	Split(ctx context.Context, u user.Info, ns, name string, req *v1alpha1.SplitRequest) (*v1alpha1.SplitRequest, error)
	Policy(ctx context.Context, u user.Info, ns, name string) (*v1alpha1.TargetPolicy, error)
}

// who is the request's user; the generic server has authenticated it.
func who(ctx context.Context) (user.Info, error) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewUnauthorized("no user in the request")
	}
	return u, nil
}

// targets is the targets resource: get, list.
type targets struct{ b Backend }

var (
	_ rest.Getter               = (*targets)(nil)
	_ rest.Lister               = (*targets)(nil)
	_ rest.Scoper               = (*targets)(nil)
	_ rest.SingularNameProvider = (*targets)(nil)
	_ rest.TableConvertor       = (*targets)(nil)
)

func (t *targets) New() runtime.Object     { return &v1alpha1.Target{} }
func (t *targets) NewList() runtime.Object { return &v1alpha1.TargetList{} }
func (t *targets) Destroy()                {}
func (t *targets) NamespaceScoped() bool   { return true }
func (t *targets) GetSingularName() string { return "target" }
func (t *targets) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	return t.b.Target(ctx, genericapirequest.NamespaceValue(ctx), name)
}

func (t *targets) List(ctx context.Context, _ *metainternalversion.ListOptions) (runtime.Object, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	if ns == "" {
		return nil, apierrors.NewBadRequest("targets are listed per namespace: give one (-n NAMESPACE)")
	}
	items, err := t.b.Targets(ctx, ns)
	if err != nil {
		return nil, err
	}
	return &v1alpha1.TargetList{Items: items}, nil
}

// connect is targets/connect: the stream of one session on one pod.
type connect struct{ b Backend }

var _ rest.Connecter = (*connect)(nil)

func (c *connect) New() runtime.Object { return &v1alpha1.TargetConnectOptions{} }
func (c *connect) Destroy()            {}

func (c *connect) NewConnectOptions() (runtime.Object, bool, string) {
	return &v1alpha1.TargetConnectOptions{}, false, ""
}

// ConnectMethods: POST, as pods/portforward; GET for WebSocket clients.
func (c *connect) ConnectMethods() []string { return []string{http.MethodPost, http.MethodGet} }

func (c *connect) Connect(ctx context.Context, name string, options runtime.Object, _ rest.Responder) (http.Handler, error) {
	opts, ok := options.(*v1alpha1.TargetConnectOptions)
	if !ok {
		return nil, fmt.Errorf("connect options of type %T", options)
	}
	u, err := who(ctx)
	if err != nil {
		return nil, err
	}
	return c.b.Connect(ctx, u, genericapirequest.NamespaceValue(ctx), name, opts)
}

// sessions is the sessions resource: get, list (in a namespace or all),
// delete (ends it).
type sessions struct {
	b Backend
}

var (
	_ rest.Getter          = (*sessions)(nil)
	_ rest.Lister          = (*sessions)(nil)
	_ rest.GracefulDeleter = (*sessions)(nil)
)

func (s *sessions) New() runtime.Object     { return &v1alpha1.Session{} }
func (s *sessions) NewList() runtime.Object { return &v1alpha1.SessionList{} }
func (s *sessions) Destroy()                {}
func (s *sessions) NamespaceScoped() bool   { return true }
func (s *sessions) GetSingularName() string { return "session" }

func (s *sessions) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	return s.b.Session(ctx, genericapirequest.NamespaceValue(ctx), name)
}

func (s *sessions) List(ctx context.Context, _ *metainternalversion.ListOptions) (runtime.Object, error) {
	items, err := s.b.Sessions(ctx, genericapirequest.NamespaceValue(ctx))
	if err != nil {
		return nil, err
	}
	return &v1alpha1.SessionList{Items: items}, nil
}

func (s *sessions) Delete(ctx context.Context, name string, _ rest.ValidateObjectFunc, _ *metav1.DeleteOptions) (runtime.Object, bool, error) {
	u, err := who(ctx)
	if err != nil {
		return nil, false, err
	}
	obj, err := s.b.Kill(ctx, u, genericapirequest.NamespaceValue(ctx), name)
	if err != nil {
		return nil, false, err
	}
	return obj, true, nil
}

// split is targets/split (create): a session's split of the target's
// queues.
// policy is targets/policy: get.
type policy struct{ b Backend }

var _ rest.Getter = (*policy)(nil)

func (p *policy) New() runtime.Object { return &v1alpha1.TargetPolicy{} }
func (p *policy) Destroy()            {}

func (p *policy) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	u, err := who(ctx)
	if err != nil {
		return nil, err
	}
	return p.b.Policy(ctx, u, genericapirequest.NamespaceValue(ctx), name)
}

type split struct{ b Backend }

var _ rest.NamedCreater = (*split)(nil)

func (s *split) New() runtime.Object { return &v1alpha1.SplitRequest{} }
func (s *split) Destroy()            {}

func (s *split) Create(ctx context.Context, name string, obj runtime.Object, _ rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*v1alpha1.SplitRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("targets/split takes a SplitRequest, not %T", obj))
	}
	u, err := who(ctx)
	if err != nil {
		return nil, err
	}
	return s.b.Split(ctx, u, genericapirequest.NamespaceValue(ctx), name, req)
}
