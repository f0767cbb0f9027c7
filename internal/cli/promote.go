package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
)

func newPromoteCmd(g *globals) *cobra.Command {
	var all, wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "promote APP [--all]",
		Short: "Let a rollout go past its pause or manual gate",
		Long: `Promote moves the app's rollout on: a blue-green release takes all traffic,
a canary goes to its next step without waiting out its pause. With --all a
canary takes all traffic at once. With --wait it follows the rollout until
it is done, fails, or stops at its next manual gate.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			after, err := lastEventID(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			rel, err := c.Promote(cmd.Context(), args[0], all)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "release %d of %s promoted\n", rel.Number, rel.App)
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return followRelease(ctx, c, out, rel, after, timeout)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "skip every remaining step: all traffic to the new release now")
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the rollout until it is done, failed or at its next manual gate")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}

func newAbortCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "abort APP",
		Short: "Stop a rollout: traffic back to the stable release, new instances stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rel, err := c.Abort(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "release %d of %s aborted: %s\n", rel.Number, rel.App, rel.Message)
			return nil
		},
	}
}

// lastEventID returns the ID of app's newest event, 0 if none.
func lastEventID(ctx context.Context, c *client.Client, app string) (int64, error) {
	var last int64
	err := c.Events(ctx, client.EventQuery{App: app}, func(e api.Event) error {
		last = max(last, e.ID)
		return nil
	})
	return last, err
}
