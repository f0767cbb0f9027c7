package edge

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// BenchmarkFastProxy measures the fasthttp listener's (and the raw
// engine's) whole path for a
// 1 KiB GET in its production setup (access log to a file, metrics
// registered, forwarding headers and request ids on), over loopback,
// with keep-alive on both sides as in bench/edge. Profile it with
//
//	go test -run '^$' -bench FastProxy -cpuprofile cpu.out -memprofile mem.out ./internal/edge
//
// Client and backend run in the same process, so a profile shows their
// share too; allocs/op is the edge's and the two fasthttp peers'.
func BenchmarkFastProxy(b *testing.B) {
	for _, engine := range []string{"fasthttp", "raw"} {
		b.Run(engine, func(b *testing.B) { benchmarkEngine(b, engine) })
	}
}

func benchmarkEngine(b *testing.B, engine string) {
	body := bytes.Repeat([]byte("x"), 1<<10)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/octet-stream")
		ctx.SetBody(body)
	}}
	go backend.Serve(bln)
	b.Cleanup(func() { backend.Shutdown() })

	logFile, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	e := New(Options{Logger: quietLogger, AccessLog: logFile, Metrics: prometheus.NewRegistry()})
	b.Cleanup(func() { e.Close() })
	e.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "bench.localhost", App: "bench",
		Backends: []Backend{{ID: "bench-1", Addr: bln.Addr().String(), Release: 1}}}}})
	url := serveTestEdge(b, e, engine)

	client := &fasthttp.HostClient{Addr: url[len("http://"):], MaxConns: 64}
	b.Cleanup(client.CloseIdleConnections)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI("/1k")
		req.Header.SetHost("bench.localhost")
		for pb.Next() {
			if err := client.Do(req, res); err != nil {
				b.Error(err)
				return
			}
			if res.StatusCode() != fasthttp.StatusOK || len(res.Body()) != len(body) {
				b.Errorf("GET /1k: %d, %d bytes", res.StatusCode(), len(res.Body()))
				return
			}
		}
	})
}
