package operator

import (
	"context"
	"fmt"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/protocol"
)

// may reports whether u may take verb on target name in ns, per RBAC.
func (o *Operator) may(ctx context.Context, u user.Info, verb, ns, name string) (bool, error) {
	d, _, err := o.Authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: verb, Namespace: ns, Name: name, ResourceRequest: true,
		APIGroup: v1alpha1.GroupName, APIVersion: v1alpha1.SchemeGroupVersion.Version, Resource: v1alpha1.ResourceTargets,
	})
	if err != nil && d != authorizer.DecisionAllow {
		return false, fmt.Errorf("asking the API server whether %s may %s targets.tether.dev %s in %s: %w", u.GetName(), verb, name, ns, err)
	}
	return d == authorizer.DecisionAllow, nil
}

// verbMeans says what each verb lets a user do, for refusals.
var verbMeans = map[string]string{
	v1alpha1.VerbUse:    "use the environment, files, DNS and outgoing network of",
	v1alpha1.VerbMirror: "mirror the incoming traffic of",
	v1alpha1.VerbSteal:  "steal the incoming traffic of",
}

// refusal is what a user is told when RBAC does not let them take verb.
func refusal(u user.Info, verb, ns, name string) string {
	return fmt.Sprintf("%s may not %s target %s in namespace %s: that needs the RBAC verb %q on targets.tether.dev (resource name %s) in %s; ask your platform team to bind the ClusterRole tether-user to you there",
		u.GetName(), verbMeans[verb], name, ns, verb, name, ns)
}

// actionVerbs are the Grant actions and the verb each needs.
var actionVerbs = []struct{ action, verb string }{
	{protocol.ActionMirror, v1alpha1.VerbMirror},
	{protocol.ActionSteal, v1alpha1.VerbSteal},
}
