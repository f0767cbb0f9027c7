package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/server"
)

func newServerCmd() *cobra.Command {
	var cfg server.Config
	var maxUploadMiB int64
	var logLevel string
	var trustedProxies string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the skiff server: API, store, controllers, edge and runtimes",
		Long: `Run the skiff server in the foreground.

Every flag can also be set with an environment variable SKIFF_<FLAG>, e.g.
SKIFF_DATA_DIR or SKIFF_HTTP_ADDR; a flag on the command line wins.
Apps keep running when the server stops; the next start adopts them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagsFromEnv(cmd.Flags()); err != nil {
				return err
			}
			log, err := edgeSetup(cmd, logLevel, trustedProxies, &cfg.Edge)
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.MaxUpload = maxUploadMiB << 20
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "where skiff keeps its state")
	f.StringVar(&cfg.HTTPAddr, "http-addr", ":8080", "address of the edge (HTTP)")
	f.StringVar(&cfg.TCPAddr, "tcp-addr", "", "host the edge's TCP ports listen on (ports come from the apps' tcp: entries); default every interface")
	f.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:7070", "address of the API (also on <data-dir>/api.sock)")
	f.StringVar(&cfg.Domain, "domain", "localhost", "base domain: app NAME answers on NAME.<domain>")
	f.StringVar(&cfg.Runtime, "runtime", "local", "where apps run: local (processes and Docker containers) or kubernetes (image apps as pods)")
	f.StringVar(&cfg.Kube.Kubeconfig, "kubeconfig", "", "kubeconfig file for --runtime kubernetes; default the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config")
	f.StringVar(&cfg.Kube.Namespace, "namespace", "", "namespace that holds the apps with --runtime kubernetes (must exist)")
	f.StringVar(&cfg.Kube.StorageClass, "storage-class", "", "storage class of the apps' volumes (PersistentVolumeClaims) with --runtime kubernetes; default the cluster's default class")
	f.StringSliceVar(&cfg.Kube.InsecureRegistries, "insecure-registry", nil, "registry HOST[:PORT] whose images --runtime kubernetes may resolve over plain HTTP (repeatable); loopback registries always may")
	f.Int64Var(&maxUploadMiB, "max-upload", 256, "largest release upload accepted, in MiB (compressed)")
	f.DurationVar(&cfg.BackoffBase, "restart-backoff", time.Second, "first restart delay of a crashing instance; doubles each time")
	f.DurationVar(&cfg.BackoffMax, "restart-backoff-max", 5*time.Minute, "longest restart delay")
	f.DurationVar(&cfg.StopGrace, "stop-grace", 10*time.Second, "time between SIGTERM and SIGKILL when an instance stops")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "longest wait for a leaving instance's requests to finish")
	f.StringVar(&cfg.EdgeTokenFile, "edge-token-file", "", "file holding a second API token that reaches only the edge feed (/v1/edge/...), for skiff edge processes; default none")
	edgeFlags(f, &logLevel, &cfg.EdgeEngine, &trustedProxies, &cfg.Edge)
	f.StringVar(&cfg.Edge.AccessLog, "access-log", "", "access log: a file, - for standard output, or off; default <data-dir>/access.log")
	return cmd
}

// edgeFlags registers the flags of the edge's HTTP side and the log
// level, which skiff server and skiff edge share; each adds its own
// --access-log, whose default differs.
func edgeFlags(f *pflag.FlagSet, logLevel, engine, trustedProxies *string, ec *server.EdgeConfig) {
	f.StringVar(logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(engine, "edge-engine", "raw", "what serves the edge's plain HTTP listener: raw, fasthttp or nethttp")
	f.MarkHidden("edge-engine")
	f.StringVar(&ec.HTTPSAddr, "https-addr", "", "address of the edge's TLS listener (HTTP/2 and HTTP/1.1); needs --tls-cert and --tls-key")
	f.StringVar(&ec.TLSCert, "tls-cert", "", "PEM certificate chain for --https-addr")
	f.StringVar(&ec.TLSKey, "tls-key", "", "PEM private key for --https-addr")
	f.StringVar(trustedProxies, "trusted-proxies", "", "CIDRs or addresses of proxies in front of the edge whose X-Forwarded-*/Forwarded headers are kept (comma-separated); default none")
	f.DurationVar(&ec.ReadHeaderTimeout, "edge-header-timeout", 10*time.Second, "longest time a client may take to send its request headers")
	f.DurationVar(&ec.IdleTimeout, "edge-idle-timeout", 120*time.Second, "how long an idle client keep-alive connection stays open")
	f.DurationVar(&ec.ConnectTimeout, "upstream-connect-timeout", 5*time.Second, "longest wait to connect to an app instance")
	f.DurationVar(&ec.ResponseTimeout, "upstream-response-timeout", 60*time.Second, "longest wait for an app instance's response headers")
	f.IntVar(&ec.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted, in bytes")
}

// edgeSetup reads what edgeFlags took: the logger for the log level, and
// the trusted proxies into ec.
func edgeSetup(cmd *cobra.Command, logLevel, trustedProxies string, ec *server.EdgeConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: expected debug, info, warn or error", logLevel)
	}
	tp, err := edge.ParseTrustedProxies(trustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	ec.TrustedProxies = tp
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})), nil
}

// flagsFromEnv sets each flag not given on the command line from
// SKIFF_<NAME> (dashes as underscores).
func flagsFromEnv(fs *pflag.FlagSet) error { return flagsFromEnvPrefix(fs, "SKIFF_") }

// flagsFromEnvPrefix sets each flag not given on the command line from
// <prefix><NAME>.
func flagsFromEnvPrefix(fs *pflag.FlagSet, prefix string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		env := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}
