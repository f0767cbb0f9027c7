package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newReleasesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "releases APP",
		Short: "List an app's releases, newest first, with each one's outcome",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			rels, err := c.Releases(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rels)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RELEASE\tSTATUS\tCREATED\tARTIFACT\tMESSAGE")
			for _, r := range rels {
				msg, _, _ := strings.Cut(r.Message, "\n")
				fmt.Fprintf(tw, "%d\t%s\t%s\t%.12s\t%s\n", r.Number, r.Status, r.Created.Local().Format("2006-01-02 15:04:05"), r.Artifact, msg)
			}
			return tw.Flush()
		},
	}
}
