// Command testapp is the app the end-to-end tests deploy: it holds every
// request for $HOLD (default 0), echoes POST bodies,
// and exits the instant it gets SIGTERM, the hardest case for a
// zero-downtime deploy.
//
// Knobs for failure tests: CRASH=1 exits with code 3 at start;
// CRASH_FILE=<path> does the same only while that file exists, so a test
// can start and end a crash loop from outside; NEVER_READY=1 makes
// /healthz answer 503; LOG_REQUESTS=1 prints "request <path>" for every
// request. ECHO_TCP=1 serves a line echo on $PORT instead of HTTP;
// ECHO_TCP_PORT=<port> serves it on that port besides HTTP on $PORT, as
// a container app with a tcp: target does (see tcpecho.go).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	hold, _ := time.ParseDuration(os.Getenv("HOLD"))
	release := os.Getenv("SKIFF_RELEASE")
	inst := os.Getenv("SKIFF_INSTANCE")
	if os.Getenv("CRASH") != "" || crashFileExists(os.Getenv("CRASH_FILE")) {
		fmt.Println("crashing on purpose")
		os.Exit(3)
	}
	logRequests := os.Getenv("LOG_REQUESTS") != ""

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		os.Exit(0) // at once: no graceful shutdown
	}()

	if os.Getenv("ECHO_TCP") != "" {
		serveTCPEcho("127.0.0.1:"+os.Getenv("PORT"), release, inst)
		return
	}
	if p := os.Getenv("ECHO_TCP_PORT"); p != "" {
		go serveTCPEcho(listenHost()+":"+p, release, inst)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if logRequests {
			fmt.Printf("request %s\n", r.URL.Path)
		}
		time.Sleep(hold)
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "release %s instance %s echo %s", release, inst, body)
			return
		}
		fmt.Fprintf(w, "release %s instance %s", release, inst)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("NEVER_READY") != "" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	fmt.Printf("testapp %s of release %s listening on %s\n", inst, release, os.Getenv("PORT"))
	if err := http.ListenAndServe(listenHost()+":"+os.Getenv("PORT"), mux); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

// crashFileExists reports whether path names an existing file; an empty
// path never does.
func crashFileExists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// listenHost is LISTEN_HOST, 0.0.0.0 in a container, whose ports are
// published from the container's own address; default 127.0.0.1.
func listenHost() string {
	if h := os.Getenv("LISTEN_HOST"); h != "" {
		return h
	}
	return "127.0.0.1"
}
