// Command testapp is the app the end-to-end tests deploy: it holds every
// request for $HOLD (default 0), echoes POST bodies,
// and exits the instant it gets SIGTERM, the hardest case for a
// zero-downtime deploy.
//
// Knobs for failure tests: CRASH=1 exits with code 3 at start;
// CRASH_FILE=<path> does the same only while that file exists, so a test
// can start and end a crash loop from outside; NEVER_READY=1 makes
// /healthz answer 503; LOG_REQUESTS=1 prints "request <path>" for every
// request. FAIL_EVERY=<n> answers every nth request to / with 500, as a
// bad release would. /stream writes CHUNKS lines (default 5), one every $CHUNK_EVERY
// (default 50ms), flushing each; /ws is a WebSocket that echoes every
// message. ECHO_TCP=1 serves a line echo on $PORT instead of HTTP;
// ECHO_TCP_PORT=<port> serves it on that port besides HTTP on $PORT, as
// a container app with a tcp: target does; ECHO_TLS_CERT and
// ECHO_TLS_KEY make that echo speak TLS (see tcpecho.go).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
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

	failEvery, _ := strconv.ParseInt(os.Getenv("FAIL_EVERY"), 10, 64)
	var served atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if logRequests {
			fmt.Printf("request %s\n", r.URL.Path)
		}
		time.Sleep(hold)
		if failEvery > 0 && served.Add(1)%failEvery == 0 {
			http.Error(w, fmt.Sprintf("release %s instance %s fails on purpose", release, inst), http.StatusInternalServerError)
			return
		}
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
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		chunks, err := strconv.Atoi(os.Getenv("CHUNKS"))
		if err != nil {
			chunks = 5
		}
		every, err := time.ParseDuration(os.Getenv("CHUNK_EVERY"))
		if err != nil {
			every = 50 * time.Millisecond
		}
		rc := http.NewResponseController(w)
		for i := range chunks {
			fmt.Fprintf(w, "chunk %d of %d from release %s\n", i+1, chunks, release)
			if err := rc.Flush(); err != nil {
				return
			}
			time.Sleep(every)
		}
	})
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		io.Copy(ws, ws)
	}))
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
