package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
)

func newReleasesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "releases APP",
		Short: "List an app's releases, newest first, with each one's outcome",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, g, func(ctx context.Context, c *client.Client) ([]api.Release, error) {
				return c.Releases(ctx, args[0])
			}, printReleases)
		},
	}
}

func printReleases(w io.Writer, rels []api.Release) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tSTATUS\tSTRATEGY\tCREATED\tARTIFACT\tIMAGE\tMESSAGE")
	for _, r := range rels {
		msg, _, _ := strings.Cut(r.Message, "\n")
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.12s\t%s\t%s\n", r.Number, r.Status, r.Strategy, r.Created.Local().Format("2006-01-02 15:04:05"), r.Artifact, shortImage(r.Image), msg)
	}
	return tw.Flush()
}

// shortImage keeps the first 12 hex digits of an image's digest, as
// docker does, so the table stays readable: name@sha256:0123456789ab for
// an image pinned by digest, sha256:0123456789ab for a Docker image ID,
// - for a process app.
func shortImage(image string) string {
	if image == "" {
		return "-"
	}
	i := strings.LastIndex(image, "sha256:")
	if i < 0 || len(image) <= i+len("sha256:")+12 {
		return image
	}
	return image[:i+len("sha256:")+12]
}
