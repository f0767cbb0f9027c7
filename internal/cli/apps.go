package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
)

func newAppsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apps",
		Short: "List the apps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, g, func(ctx context.Context, c *client.Client) ([]api.App, error) {
				return c.Apps(ctx)
			}, printApps)
		},
	}
}

func printApps(w io.Writer, apps []api.App) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRELEASE\tREADY\tSTATUS\tURL")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%s\n", a.Name, a.Target, a.Ready, a.Replicas, a.Status, a.URL)
	}
	return tw.Flush()
}
