package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "destroy APP",
		Short: "Stop an app and delete it with its releases, logs and volumes",
		Long: `Stop an app and delete it with its releases, logs and volumes.

The app's volumes go with it, and the data in them: its Docker volumes on
one host, its PersistentVolumeClaims on Kubernetes (where the volume behind
a claim is then kept or deleted by its reclaim policy, which for volumes a
storage class provisioned is usually Delete). Copy out what you need first.`,
		Args: cobra.ExactArgs(1),
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
