// Package cli is the skiff command line: one file per command. Every
// command but `server`, `validate` and `schema` talks to a server through
// the API client.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/server"
	"github.com/skiff-sh/skiff/internal/spec"
)

// Main runs the CLI with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	root.SetArgs(os.Args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	printError(root.ErrOrStderr(), err)
	return 1
}

// exitError ends a command with a code after it said why itself.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func printError(w io.Writer, err error) {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		// The message already lists each detail with its position.
		for _, line := range strings.Split(apiErr.Message, "\n") {
			fmt.Fprintf(w, "error: %s\n", line)
		}
		return
	}
	var specErrs *spec.Errors
	if errors.As(err, &specErrs) {
		for _, e := range specErrs.List {
			fmt.Fprintf(w, "error: %s\n", e)
		}
		return
	}
	fmt.Fprintf(w, "error: %s\n", err)
}

// globals are the flags every command shares.
type globals struct {
	server string
	output string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "A small cloud in one binary: deploy apps, route them, keep them running",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.server, "server", os.Getenv("SKIFF_SERVER"),
		"API address: unix:///path/api.sock or http://host:7070 (env SKIFF_SERVER; default: the local server's socket)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format of read commands: text or json")
	root.AddCommand(
		newServerCmd(),
		newEdgeCmd(g),
		newTokenCmd(),
		newDeployCmd(g),
		newAppsCmd(g),
		newStatusCmd(g),
		newReleasesCmd(g),
		newRollbackCmd(g),
		newPromoteCmd(g),
		newAbortCmd(g),
		newRolloutCmd(g),
		newScaleCmd(g),
		newLogsCmd(g),
		newDestroyCmd(g),
		newValidateCmd(),
		newSchemaCmd(),
		newKubeCmd(),
	)
	return root
}

// client connects to the server the flags and environment name.
func (g *globals) client() (*client.Client, error) {
	token := os.Getenv("SKIFF_TOKEN")
	addr := g.server
	dataDir := defaultDataDir()
	if addr == "" {
		sock := filepath.Join(dataDir, server.SocketName)
		if _, err := os.Stat(sock); err == nil {
			addr = "unix://" + sock
		} else {
			addr = "http://127.0.0.1:7070"
		}
	}
	if token == "" && !strings.HasPrefix(addr, "unix://") {
		if b, err := os.ReadFile(filepath.Join(dataDir, server.TokenName)); err == nil {
			token = strings.TrimSpace(string(b))
		}
	}
	return client.New(addr, token)
}

// show is the shape of every read command: fetch from the API, then print
// as JSON (-o json) or as text.
func show[T any](cmd *cobra.Command, g *globals, fetch func(context.Context, *client.Client) (T, error), text func(io.Writer, T) error) error {
	asJSON, err := g.json()
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	v, err := fetch(cmd.Context(), c)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), v)
	}
	return text(cmd.OutOrStdout(), v)
}

// json says whether -o asks for JSON.
func (g *globals) json() (bool, error) {
	switch g.output {
	case "json":
		return true, nil
	case "text", "":
		return false, nil
	}
	return false, fmt.Errorf("--output %q: expected text or json", g.output)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// defaultDataDir is /var/lib/skiff as root, else $XDG_DATA_HOME/skiff or
// ~/.local/share/skiff; SKIFF_DATA_DIR overrides it.
func defaultDataDir() string {
	if d := os.Getenv("SKIFF_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/skiff"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "skiff")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "skiff")
	}
	return filepath.Join(home, ".local", "share", "skiff")
}
