package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy APP",
		Short: "Stop an app and delete it with its releases and logs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Destroy(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is being destroyed\n", args[0])
			return nil
		},
	}
}
