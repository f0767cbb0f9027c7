package cli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/server"
)

func newEdgeCmd(g *globals) *cobra.Command {
	var cfg server.EdgeProcConfig
	var logLevel, trustedProxies string
	cmd := &cobra.Command{
		Use:   "edge --server URL",
		Short: "Run an edge on its own, fed routes by a skiff server",
		Long: `Run the edge in a process of its own: it serves the apps' HTTP, TLS and TCP
traffic with the routes a skiff server sends it, reports back what it
serves, and keeps serving its last routes while the server restarts or is
away. Run several behind a load balancer, or one per machine.

The server's address comes from --server (or SKIFF_SERVER) and its token
from SKIFF_TOKEN. Every flag can also be set as SKIFF_EDGE_<FLAG>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagsFromEnvPrefix(cmd.Flags(), "SKIFF_EDGE_"); err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: expected debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			tp, err := edge.ParseTrustedProxies(trustedProxies)
			if err != nil {
				return fmt.Errorf("--trusted-proxies: %w", err)
			}
			cfg.Edge.TrustedProxies = tp
			cfg.Server, cfg.Token = g.server, os.Getenv("SKIFF_TOKEN")
			if cfg.Name == "" {
				cfg.Name, _ = os.Hostname()
			}
			return server.RunEdge(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "this edge's name on the server, a DNS label (default: the host name)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", ":8080", "address of the edge (HTTP)")
	f.StringVar(&cfg.TCPAddr, "tcp-addr", "", "host the apps' TCP ports listen on; default every interface")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "address serving GET /metrics (Prometheus); default none")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.EdgeEngine, "edge-engine", "fasthttp", "what serves the plain HTTP listener: fasthttp or nethttp")
	f.MarkHidden("edge-engine")
	f.StringVar(&cfg.Edge.HTTPSAddr, "https-addr", "", "address of the TLS listener (HTTP/2 and HTTP/1.1); needs --tls-cert and --tls-key")
	f.StringVar(&cfg.Edge.TLSCert, "tls-cert", "", "PEM certificate chain for --https-addr")
	f.StringVar(&cfg.Edge.TLSKey, "tls-key", "", "PEM private key for --https-addr")
	f.StringVar(&trustedProxies, "trusted-proxies", "", "CIDRs or addresses of proxies in front of the edge whose forwarding headers are kept (comma-separated)")
	f.StringVar(&cfg.Edge.AccessLog, "access-log", "-", "access log: a file, - for standard output, or off")
	f.DurationVar(&cfg.Edge.ReadHeaderTimeout, "edge-header-timeout", 10*time.Second, "longest time a client may take to send its request headers")
	f.DurationVar(&cfg.Edge.IdleTimeout, "edge-idle-timeout", 120*time.Second, "how long an idle client keep-alive connection stays open")
	f.DurationVar(&cfg.Edge.ConnectTimeout, "upstream-connect-timeout", 5*time.Second, "longest wait to connect to an app instance")
	f.DurationVar(&cfg.Edge.ResponseTimeout, "upstream-response-timeout", 60*time.Second, "longest wait for an app instance's response headers")
	f.IntVar(&cfg.Edge.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted, in bytes")
	return cmd
}
