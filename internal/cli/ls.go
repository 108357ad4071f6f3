package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/kube"
)

func newLs(streams Streams) *cobra.Command {
	var kf kubeFlags
	var output string
	cmd := &cobra.Command{
		Use:   "ls [-n NAMESPACE] [-o json]",
		Short: "List the targets in a namespace",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return usageErrorf("-o %q: want json or text", output)
			}
			k, err := newKubeClients(kf, "")
			if err != nil {
				return err
			}
			if err := k.checkReachable(cmd.Context()); err != nil {
				return err
			}
			targets, err := (&kube.Resolver{Client: k.client, Dynamic: k.dynamic}).List(cmd.Context(), k.namespace)
			if err != nil {
				return err
			}
			if output == "json" {
				if targets == nil {
					targets = []kube.TargetInfo{}
				}
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Namespace string            `json:"namespace"`
					Targets   []kube.TargetInfo `json:"targets"`
				}{k.namespace, targets})
			}
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tREADY\tPODS\tINFO")
			for _, t := range targets {
				fmt.Fprintf(tw, "%s\t%v\t%d\t%s\n", t.Target, t.Ready, t.Pods, t.Info)
			}
			return tw.Flush()
		},
	}
	kf.add(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: text (default) or json")
	return cmd
}
