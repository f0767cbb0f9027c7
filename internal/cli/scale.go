package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func newScaleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scale APP N",
		Short: "Set how many instances an app runs",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return fmt.Errorf("replicas must be a whole number >= 0, got %q", args[1])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			a, err := c.Scale(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s scaled to %d\n", a.Name, a.Replicas)
			return nil
		},
	}
	// Arguments after APP are not flags, so `scale web -1` reaches the
	// range check instead of failing as an unknown flag.
	cmd.Flags().SetInterspersed(false)
	return cmd
}
