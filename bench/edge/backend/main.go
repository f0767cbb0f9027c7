// Command backend is the fixed app behind every proxy in the edge
// benchmark: a tiny net/http server answering /1k and /1m with 1 KiB and
// 1 MiB bodies made once at start, and /healthz for skiff's probe.
//
// It listens on 127.0.0.1:$PORT (skiff gives a process app its port that
// way). With BENCH_TLS_ADDR, BENCH_TLS_CERT and BENCH_TLS_KEY set it
// serves the same handler over TLS with HTTP/2 as well, which is the
// benchmark's no-proxy baseline for HTTP/2.
package main

import (
	"bytes"
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("backend: PORT is not set; run it as a skiff app or with PORT=NNNN")
	}
	mux := http.NewServeMux()
	for path, size := range map[string]int{"/1k": 1 << 10, "/1m": 1 << 20} {
		body := bytes.Repeat([]byte("x"), size)
		length := strconv.Itoa(size)
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", length)
			w.Write(body)
		})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})

	servers := []*http.Server{{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	tlsAddr, cert, key := os.Getenv("BENCH_TLS_ADDR"), os.Getenv("BENCH_TLS_CERT"), os.Getenv("BENCH_TLS_KEY")
	if tlsAddr != "" {
		servers = append(servers, &http.Server{Addr: tlsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() {
			if i == 0 {
				errc <- srv.ListenAndServe()
			} else {
				errc <- srv.ListenAndServeTLS(cert, key)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("backend: %v", err)
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(shutdown)
	}
}
