package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
)

func newLogsCmd(g *globals) *cobra.Command {
	var q client.LogQuery
	cmd := &cobra.Command{
		Use:   "logs APP [-f] [--since 10m] [--tail N]",
		Short: "Print an app's logs, from every instance, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.json()
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			err = c.Logs(cmd.Context(), args[0], q, func(l api.LogLine) error {
				if asJSON {
					return writeJSON(out, l)
				}
				_, err := fmt.Fprintf(out, "%s %s %s\n", l.Time.Local().Format("15:04:05.000"), l.Instance, l.Text)
				return err
			})
			if q.Follow && errors.Is(err, context.Canceled) {
				return nil // Ctrl-C ends a follow
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&q.Follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().StringVar(&q.Since, "since", "", "only lines newer than this: a duration (10m) or a time (RFC 3339)")
	cmd.Flags().IntVar(&q.Tail, "tail", 0, "only the last N lines")
	cmd.Flags().IntVar(&q.Release, "release", 0, "only lines of this release")
	return cmd
}
