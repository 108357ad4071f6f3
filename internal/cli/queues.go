package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
)

func newQueuesCmd(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "Queue splitting through tether-operator",
		Args:  noArgs,
	}
	cmd.AddCommand(newQueuesStatus(streams))
	return cmd
}

func newQueuesStatus(streams Streams) *cobra.Command {
	var kf kubeFlags
	var output string
	var all bool
	cmd := &cobra.Command{
		Use:   "status [-n NAMESPACE | -A] [-o json]",
		Short: "The queue splits: their workloads, sessions, filters and lag",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, ns, err := listScope(kf, all, output)
			if err != nil {
				return err
			}
			list, err := listSplits(cmd.Context(), k, ns)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return printSplits(streams.Out, list, time.Now())
		},
	}
	kf.add(cmd.Flags())
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json for the QueueSplits as the API has them")
	return cmd
}

// listSplits reads the QueueSplits of ns ("": all).
func listSplits(ctx context.Context, k *kubeClients, ns string) ([]queuesv1.QueueSplit, error) {
	ri := k.dynamic.Resource(queuesv1.GroupVersionResource)
	raw, err := ri.Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		where := "namespace " + ns
		if ns == "" {
			where = "any namespace"
		}
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("this cluster has no queue splitting (no queuesplits.queues.tether.dev): tether operator install adds it")
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("%w: listing queue splits in %s needs list on queuesplits.queues.tether.dev (the ClusterRole tether-user has it: ask your platform team)", err, where)
		}
		return nil, fmt.Errorf("listing the queue splits of %s: %w", where, err)
	}
	b, err := raw.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var list queuesv1.QueueSplitList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("decoding the queue splits: %w", err)
	}
	return list.Items, nil
}

// printSplits writes per split a line (workload, phase, message) and
// tables of its queues and its sessions.
func printSplits(w io.Writer, splits []queuesv1.QueueSplit, now time.Time) error {
	if len(splits) == 0 {
		fmt.Fprintln(w, "no queue splits")
		return nil
	}
	for i, qs := range splits {
		if i > 0 {
			fmt.Fprintln(w)
		}
		head := fmt.Sprintf("%s/%s: %s, %s", qs.Namespace, qs.Name, qs.Spec.Target, cmp.Or(qs.Status.Phase, queuesv1.PhaseIdle))
		if qs.Status.Message != "" {
			head += ": " + qs.Status.Message
		}
		fmt.Fprintln(w, head)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  QUEUE\tKIND\tSOURCE\tFALLBACK\tLAG\tTO DEPLOYED")
		for _, q := range qs.Spec.Queues {
			st := queuesv1.SplitQueueStatus{}
			for _, s := range qs.Status.Queues {
				if s.ID == q.ID {
					st = s
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\n", q.ID, q.Kind, dash(st.Source), dash(st.Fallback), st.Lag, st.ToFallback)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(qs.Status.Sessions) == 0 {
			fmt.Fprintln(w, "  no sessions")
			continue
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SESSION\tUSER\tQUEUE\tFILTER\tDELIVERED\tOVERLAPS\tSTARTED\tSTATE")
		for _, s := range qs.Status.Sessions {
			state := "starting"
			switch {
			case s.Error != "":
				state = "failed: " + s.Error
			case s.Ending:
				state = "ending"
			case s.Ready:
				state = "splitting"
			}
			for _, q := range s.Queues {
				var f []string
				for _, h := range slices.Sorted(maps.Keys(q.Filter)) {
					f = append(f, h+"="+q.Filter[h])
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%s ago\t%s\n", s.Run, s.User, q.ID, strings.Join(f, ","), q.Delivered, q.Overlaps, duration.HumanDuration(now.Sub(s.Started.Time)), state)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
