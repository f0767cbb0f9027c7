package cli

import (
	"os"

	"github.com/spf13/cobra"

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

On Kubernetes, --kube-namespace makes the edge watch the EndpointSlices of
skiff's release Services itself: pods that become ready, or go, change
what it serves at once, also while the server is away.

The server's address comes from --server (or SKIFF_SERVER) and its token
from SKIFF_TOKEN. Every flag can also be set as SKIFF_EDGE_<FLAG>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagsFromEnvPrefix(cmd.Flags(), "SKIFF_EDGE_"); err != nil {
				return err
			}
			log, err := edgeSetup(cmd, logLevel, trustedProxies, &cfg.Edge)
			if err != nil {
				return err
			}
			cfg.Logger = log
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
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "address serving GET /metrics (Prometheus) and GET /readyz (200 once the edge serves the server's routes); default none")
	f.StringVar(&cfg.KubeNamespace, "kube-namespace", "", "find the ready pods of releases on a cluster from the EndpointSlices in this namespace (skiff server's --namespace); default: the server's backends only")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig for --kube-namespace; default: in-cluster credentials, else $KUBECONFIG or ~/.kube/config")
	edgeFlags(f, &logLevel, &cfg.EdgeEngine, &trustedProxies, &cfg.Edge)
	f.StringVar(&cfg.Edge.AccessLog, "access-log", "-", "access log: a file, - for standard output, or off")
	return cmd
}
