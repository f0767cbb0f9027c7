package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/instance"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status APP",
		Short: "Show an app: its releases in service, instances and recent events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, g, func(ctx context.Context, c *client.Client) (api.AppStatus, error) {
				return c.App(ctx, args[0])
			}, func(w io.Writer, st api.AppStatus) error {
				printStatus(w, st, time.Now())
				return nil
			})
		},
	}
}

func printStatus(w io.Writer, st api.AppStatus, now time.Time) {
	fmt.Fprintf(w, "app:      %s (%s)\n", st.Name, st.Status)
	fmt.Fprintf(w, "url:      %s\n", st.URL)
	if len(st.Hosts) > 1 {
		fmt.Fprintf(w, "hosts:    %s\n", strings.Join(st.Hosts, ", "))
	}
	fmt.Fprintf(w, "release:  %d (last good: %d)\n", st.Target, st.Stable)
	fmt.Fprintf(w, "ready:    %d/%d\n", st.Ready, st.Replicas)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tRELEASE\tSTATE\tENDPOINT\tPID\tRESTARTS\tUP")
	var notes []string
	for _, set := range st.Sets {
		for _, in := range set.Instances {
			up := "-"
			if !in.StartedAt.IsZero() && in.State != instance.CrashLoop {
				up = now.Sub(in.StartedAt).Round(time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%s\n", in.ID, in.Release, stateText(in, now), in.Endpoint, in.PID, in.Restarts, up)
			if in.Message != "" {
				notes = append(notes, fmt.Sprintf("%s: %s", in.ID, in.Message))
			}
			// Restarted after an OOM kill, it looks healthy again: say why
			// it restarted, or the user never learns the limit is too low.
			if in.State != instance.CrashLoop && in.LastExit != nil && in.LastExit.OOM {
				notes = append(notes, fmt.Sprintf("%s: its last run was killed: out of memory at %s (raise resources.memory)", in.ID, in.LastExit.At.Local().Format("15:04:05")))
			}
			if in.State == instance.CrashLoop && in.LastExit != nil && len(in.LastExit.LogTail) > 0 {
				notes = append(notes, fmt.Sprintf("%s last output:\n    %s", in.ID, strings.Join(in.LastExit.LogTail, "\n    ")))
			}
		}
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	if len(st.Events) > 0 {
		fmt.Fprintln(w, "\nrecent events:")
		for _, e := range st.Events {
			fmt.Fprintf(w, "  %s  %s\n", e.Time.Local().Format("15:04:05"), e.Message)
		}
	}
}

// stateText spells out a crash loop, which is what a user needs to see.
func stateText(in instance.Instance, now time.Time) string {
	if in.State != instance.CrashLoop || in.LastExit == nil {
		return string(in.State)
	}
	how := fmt.Sprintf("exit %d", in.LastExit.Code)
	if in.LastExit.Signal != "" {
		how = in.LastExit.Signal
	}
	if in.LastExit.OOM {
		how = "out of memory"
	}
	s := fmt.Sprintf("crash-looping (%s", how)
	if !in.NextStart.IsZero() {
		s += fmt.Sprintf(", next start in %s", in.NextStart.Sub(now).Round(100*time.Millisecond))
	}
	return s + ")"
}
