package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// TestEdgeReadyOnceItServesRoutes: an edge process started while its
// server is away answers /readyz 503 (it has no routes: a load balancer
// must send it nothing), and 200 once it follows the server, which it
// then stays while the server is away again.
func TestEdgeReadyOnceItServesRoutes(t *testing.T) {
	apiAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	token := "edge-ready-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "edge.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	edgeDone := make(chan error, 1)
	go func() {
		edgeDone <- RunEdge(ctx, EdgeProcConfig{
			Name: "ready-test", Server: "http://" + apiAddr, Token: token,
			HTTPAddr: "127.0.0.1:0", MetricsAddr: metricsAddr,
			Logger: slog.New(slog.DiscardHandler), Edge: EdgeConfig{AccessLog: "off"},
		})
	}()
	readyz := func() (int, string) {
		res, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	await := func(what string, want int) string {
		t.Helper()
		var code int
		var body string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if code, body = readyz(); code == want {
				return body
			}
		}
		t.Fatalf("%s: /readyz answered %d %q, want %d", what, code, body, want)
		return ""
	}
	if body := await("with no server", http.StatusServiceUnavailable); !strings.Contains(body, "no routes yet from http://"+apiAddr) {
		t.Errorf("/readyz says %q; want it to name the server it waits for", body)
	}

	sctx, stopServer := context.WithCancel(context.Background())
	serverDone := make(chan error, 1)
	go func() {
		serverDone <- Run(sctx, Config{
			DataDir: testenv.DataDir(t), HTTPAddr: "127.0.0.1:0", APIAddr: apiAddr, Domain: "localhost",
			EdgeTokenFile: tokenFile, Logger: slog.New(slog.DiscardHandler), Edge: EdgeConfig{AccessLog: "off"},
		})
	}()
	if body := await("following the server", http.StatusOK); !strings.HasPrefix(body, "ready: serving routes of generation ") {
		t.Errorf("/readyz says %q", body)
	}
	stopServer()
	if err := <-serverDone; err != nil {
		t.Fatalf("server: %v", err)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("with the server gone again /readyz answered %d %q; want 200: the edge keeps its routes", code, body)
	}
	cancel()
	if err := <-edgeDone; err != nil {
		t.Fatalf("edge: %v", err)
	}
}
