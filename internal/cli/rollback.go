package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newRollbackCmd(g *globals) *cobra.Command {
	var to int
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback APP [--to N]",
		Short: "Deploy an earlier release again, as a new release",
		Long: `Rollback creates a new release from an earlier one: the same files, spec
and command. Without --to it returns to the last good release before the one
serving now. History only grows.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 {
				return fmt.Errorf("--to must be a release number, got %d", to)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			rel, err := c.Rollback(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "release %d of %s created from release %d\n", rel.Number, rel.App, rel.RollbackOf)
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return waitRelease(ctx, c, out, rel, timeout)
		},
	}
	cmd.Flags().IntVar(&to, "to", 0, "release to return to (default: the last good one before the current)")
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the rollback until it is done or failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}
