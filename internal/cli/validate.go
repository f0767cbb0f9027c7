package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/spec"
)

func newValidateCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate [-f skiff.yaml]",
		Short: "Check a spec offline and report every problem with its position",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sp, err := spec.ParseFile(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: app %q is valid\n", file, sp.Name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "skiff.yaml", "the spec to check")
	return cmd
}

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of skiff.yaml, for editors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := spec.Schema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(s, '\n'))
			return err
		},
	}
}
