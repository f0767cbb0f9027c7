package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/server"
)

func newTokenCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "token [--data-dir DIR]",
		Short: "Print the server's admin token, read from its data dir",
		Long: `Token prints the admin token a skiff server wrote to <data-dir>/admin.token
on its first start, for SKIFF_TOKEN on another machine. It reads the file,
so it works only where the data dir is, such as inside the control plane's
pod: kubectl -n skiff exec deploy/skiff -- /skiff token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(filepath.Join(dataDir, server.TokenName))
			if err != nil {
				return fmt.Errorf("read the admin token: %w (is --data-dir the server's data dir?)", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(b)))
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data dir")
	return cmd
}
