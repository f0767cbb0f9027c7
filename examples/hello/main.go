// Command hello is skiff's demo app: a tiny web server that says which
// release and instance answered, so deploys, scaling and rollbacks can be
// seen with curl.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	// version.txt ships with the release, so a rollback shows the old file.
	version := "unknown"
	if b, err := os.ReadFile("version.txt"); err == nil {
		version = strings.TrimSpace(string(b))
	}
	release := os.Getenv("SKIFF_RELEASE")
	inst := os.Getenv("SKIFF_INSTANCE")
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "hello from skiff"
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s: version %s, release %s, instance %s\n", greeting, version, release, inst)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	// Loopback is where a process app is reached; in a container the
	// published port arrives on the container's own address, so a
	// container sets LISTEN_HOST=0.0.0.0.
	host := os.Getenv("LISTEN_HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	srv := &http.Server{Addr: host + ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("instance %s stopping", inst)
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("instance %s of release %s (version %s) listening on %s", inst, release, version, srv.Addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
