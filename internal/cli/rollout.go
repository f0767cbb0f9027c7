package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Inspect an app's rollout",
	}
	var watch bool
	status := &cobra.Command{
		Use:   "status APP [--watch]",
		Short: "Show where the app's latest rollout stands: step, weights, analysis, time left",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fetch := func(ctx context.Context, c *client.Client) (api.RolloutStatus, error) {
				return c.Rollout(ctx, args[0])
			}
			if !watch {
				return show(cmd, g, fetch, printRollout)
			}
			for {
				if err := show(cmd, g, fetch, printRollout); err != nil {
					return err
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				fmt.Fprintln(cmd.OutOrStdout())
			}
		},
	}
	status.Flags().BoolVarP(&watch, "watch", "w", false, "print it again every second")
	cmd.AddCommand(status)
	return cmd
}

func printRollout(w io.Writer, st api.RolloutStatus) error {
	fmt.Fprintf(w, "release %d of %s (%s): %s\n", st.Release, st.App, st.Strategy, st.Status)
	if st.Message != "" {
		msg, _, _ := strings.Cut(st.Message, "\n")
		fmt.Fprintf(w, "  %s\n", msg)
	}
	if len(st.Steps) > 0 {
		var steps []string
		for i, s := range st.Steps {
			pause := s.Pause
			if pause == "" {
				pause = "1m"
			}
			mark := ""
			if i+1 == st.Step {
				mark = "*"
			}
			steps = append(steps, fmt.Sprintf("%s%s for %s", mark, s.Weight, pause))
		}
		fmt.Fprintf(w, "  steps: %s (step %d of %d)\n", strings.Join(steps, ", "), st.Step, len(st.Steps))
	}
	if len(st.Weights) > 0 {
		var ws []string
		for _, s := range st.Weights {
			ws = append(ws, fmt.Sprintf("release %d %g%%", s.Release, s.Percent))
		}
		fmt.Fprintf(w, "  traffic: %s\n", strings.Join(ws, ", "))
	}
	if st.Preview != "" {
		fmt.Fprintf(w, "  preview: %s\n", st.Preview)
	}
	if a := st.Analysis; a != nil {
		fmt.Fprintf(w, "  analysis over %s: %d requests, error rate %.2f%%, p95 %s (stable: %d requests, %.2f%%, p95 %s)\n",
			a.Window.Round(time.Second), a.Requests, a.ErrorRate, a.P95, a.StableRequests, a.StableErrorRate, a.StableP95)
	}
	switch st.Waiting {
	case "promote":
		fmt.Fprintf(w, "  waiting for: skiff promote %s (or skiff abort %s)\n", st.App, st.App)
	case "pause":
		fmt.Fprintf(w, "  next step in: %s\n", st.TimeLeft)
	case "ready":
		fmt.Fprintln(w, "  waiting for: new instances to become ready")
	}
	return nil
}
