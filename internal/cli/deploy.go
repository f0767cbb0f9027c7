package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/spec"
)

// maxPack bounds the uncompressed size of an app directory.
const maxPack = 1 << 30

func newDeployCmd(g *globals) *cobra.Command {
	var file, strategy string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "deploy [-f skiff.yaml] [--wait] [--strategy rolling|blue-green|canary]",
		Short: "Upload the app's directory and spec as a new release",
		Long: `Deploy validates skiff.yaml, packs the directory it is in (minus files
matched by .skiffignore) and uploads both as a new release. The server runs
the release's command in its own copy of those files, so a rollback runs
exactly the old files. With --wait it follows the deploy until the new
release serves all traffic and the old one is stopped (exit 0), until it
fails or is aborted (exit 1), or until it waits at a manual gate for
skiff promote (exit 0). --strategy replaces the spec's deploy strategy for
this deploy only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if strategy != "" && !slices.Contains(spec.Strategies, strategy) {
				return fmt.Errorf("--strategy %q: use one of %s", strategy, strings.Join(spec.Strategies, ", "))
			}
			sp, data, err := spec.LoadFile(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			archive, err := pack(filepath.Dir(file))
			if err != nil {
				return err
			}
			defer os.Remove(archive.Name())
			defer archive.Close()
			// The file name as typed, so the server's errors point at it.
			rel, err := c.DeployWith(cmd.Context(), file, data, archive, strategy)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "release %d of %s created\n", rel.Number, rel.App)
			if !wait {
				fmt.Fprintf(out, "follow it with: skiff status %s\n", sp.Name)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return waitRelease(ctx, c, out, rel, timeout)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "skiff.yaml", "the app's spec; its directory is uploaded")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the deploy until it is done or failed")
	cmd.Flags().StringVar(&strategy, "strategy", "", "deploy strategy for this deploy only: rolling, blue-green or canary (default: the spec's)")
	cmd.RegisterFlagCompletionFunc("strategy", cobra.FixedCompletions(spec.Strategies, cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}

// pack writes the app directory to a temporary archive, so its size is
// known and a failed upload can be retried from it.
func pack(dir string) (*os.File, error) {
	f, err := os.CreateTemp("", "skiff-deploy-*.tar.gz")
	if err != nil {
		return nil, err
	}
	if err := artifact.Pack(f, dir, maxPack); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// errStopFollowing ends an event stream once the outcome is known.
var errStopFollowing = errors.New("stop following")

// waitRelease prints the deploy's events until its release completes or
// stops at a manual gate (nil), fails or is superseded (an error saying
// why).
func waitRelease(ctx context.Context, c *client.Client, out io.Writer, rel api.Release, timeout time.Duration) error {
	return followRelease(ctx, c, out, rel, 0, timeout)
}

// followRelease is waitRelease for the events after the one with ID
// after, or with after 0 for those after the release's creation.
func followRelease(ctx context.Context, c *client.Client, out io.Writer, rel api.Release, after int64, timeout time.Duration) error {
	var outcome error
	seen := after > 0
	err := c.Events(ctx, client.EventQuery{App: rel.App, Follow: true, After: after}, func(e api.Event) error {
		if !seen {
			// Skip history up to this release's creation.
			seen = e.Kind == "release.created" && e.Release == rel.Number
			return nil
		}
		fmt.Fprintf(out, "%s  %s\n", e.Time.Local().Format("15:04:05"), e.Message)
		switch {
		case e.Release == rel.Number && (e.Kind == "release.complete" || e.Kind == "release.paused"):
			return errStopFollowing
		case e.Release == rel.Number && e.Kind == "release.failed":
			outcome = fmt.Errorf("deploy of release %d failed: %s", rel.Number, e.Message)
			return errStopFollowing
		case e.Kind == "release.created" && e.Release > rel.Number:
			outcome = fmt.Errorf("release %d was superseded by release %d before it finished", rel.Number, e.Release)
			return errStopFollowing
		}
		return nil
	})
	switch {
	case errors.Is(err, errStopFollowing):
		return outcome
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("release %d not done after %s; it goes on: see skiff status %s", rel.Number, timeout, rel.App)
	case err == nil:
		return fmt.Errorf("the server ended the event stream before release %d was done", rel.Number)
	}
	return err
}
