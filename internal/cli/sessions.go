package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/tether-dev/tether/api/v1alpha1"
)

func newSessions(streams Streams) *cobra.Command {
	var kf kubeFlags
	var output string
	var all bool
	cmd := &cobra.Command{
		Use:   "sessions [-n NAMESPACE | -A] [-o json]",
		Short: "List the sessions running through tether-operator (who, on what, doing what)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, ns, err := listScope(kf, all, output)
			if err != nil {
				return err
			}
			list, err := listSessions(cmd.Context(), k, ns)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(list.Items)
			}
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAMESPACE\tUSER\tTARGET\tPODS\tINCOMING\tSTARTED\tCLIENT")
			for i := range list.Items {
				s := &list.Items[i]
				var pods []string
				for _, p := range s.Status.Pods {
					pods = append(pods, p.Name)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s ago\t%s\n", s.Name, s.Namespace, s.Spec.User, s.Spec.Target,
					strings.Join(pods, ","), s.Incoming(), duration.HumanDuration(time.Since(s.Status.Started.Time)), s.Spec.Client)
			}
			return tw.Flush()
		},
	}
	kf.add(cmd.Flags())
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "sessions of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: text (default) or json")
	cmd.AddCommand(newSessionsKill(streams))
	return cmd
}

func newSessionsKill(streams Streams) *cobra.Command {
	var kf kubeFlags
	cmd := &cobra.Command{
		Use:   "kill ID [-n NAMESPACE]",
		Short: "End a session for good (its user's tether stops its command and says who ended it)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("tether sessions kill takes one session ID (tether sessions -A lists them)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := newKubeClients(kf, "")
			if err != nil {
				return err
			}
			id := args[0]
			raw, err := k.client.Discovery().RESTClient().Delete().AbsPath(sessionsPath(k.namespace), id).DoRaw(cmd.Context())
			if err != nil {
				return sessionsError(err, "delete", k.namespace, id)
			}
			var s v1alpha1.Session
			if json.Unmarshal(raw, &s) == nil && s.Spec.User != "" {
				fmt.Fprintf(streams.Out, "session %s of %s on %s in %s ended\n", id, s.Spec.User, s.Spec.Target, k.namespace)
				return nil
			}
			fmt.Fprintf(streams.Out, "session %s ended\n", id)
			return nil
		},
	}
	kf.add(cmd.Flags())
	return cmd
}

func sessionsPath(ns string) string {
	p := "/apis/" + v1alpha1.SchemeGroupVersion.String()
	if ns != "" {
		p += "/namespaces/" + ns
	}
	return p + "/" + v1alpha1.ResourceSessions
}

// listSessions lists the operator's sessions of ns ("": all).
func listSessions(ctx context.Context, k *kubeClients, ns string) (*v1alpha1.SessionList, error) {
	raw, err := k.client.Discovery().RESTClient().Get().AbsPath(sessionsPath(ns)).DoRaw(ctx)
	if err != nil {
		return nil, sessionsError(err, "list", ns, "")
	}
	var list v1alpha1.SessionList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decoding the sessions: %w", err)
	}
	return &list, nil
}

// sessionsError explains a refused request on sessions.tether.dev.
func sessionsError(err error, verb, ns, id string) error {
	where := "in namespace " + ns
	if ns == "" {
		where = "in any namespace"
	}
	var st apierrors.APIStatus
	switch {
	case apierrors.IsForbidden(err):
		role := "tether-user"
		if verb == "delete" {
			role = "tether-admin"
		}
		return fmt.Errorf("%w: this needs the RBAC verb %s on sessions.tether.dev %s (the ClusterRole %s has it: ask your platform team)", err, verb, where, role)
	case apierrors.IsNotFound(err) && id != "":
		return fmt.Errorf("no session %s %s: tether sessions -A lists them (give its namespace with -n)", id, where)
	case apierrors.IsNotFound(err):
		return errors.New("this cluster has no tether-operator (sessions are listed by it): tether operator install")
	case errors.As(err, &st) && st.Status().Code == 503:
		return fmt.Errorf("tether-operator does not answer: %w; see tether operator status", err)
	}
	return fmt.Errorf("%s sessions %s: %w", verb, where, err)
}

// listScope checks a list command's -o and returns its clients and the
// namespace it lists ("" with -A).
func listScope(kf kubeFlags, all bool, output string) (*kubeClients, string, error) {
	if output != "" && output != "json" && output != "text" {
		return nil, "", usageErrorf("-o %q: want json or text", output)
	}
	k, err := newKubeClients(kf, "")
	if err != nil {
		return nil, "", err
	}
	if all {
		return k, "", nil
	}
	return k, k.namespace, nil
}
