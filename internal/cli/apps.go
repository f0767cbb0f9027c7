package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newAppsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apps",
		Short: "List the apps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			apps, err := c.Apps(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), apps)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRELEASE\tREADY\tSTATUS\tURL")
			for _, a := range apps {
				fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%s\n", a.Name, a.Target, a.Ready, a.Replicas, a.Status, a.URL)
			}
			return tw.Flush()
		},
	}
}
