// Command testapp is the app the runtime conformance suite runs as its
// instances. It prints "started <instance>", listens on $PORT, answers "/"
// with "<SKIFF_INSTANCE> <SKIFF_RELEASE>" and "/healthz" with 200.
//
// Knobs (environment):
//
//	TESTAPP_MODE       serve (default): on SIGTERM print "got SIGTERM",
//	                   pause briefly, exit 0.
//	                   crash: print "crashing with code N", exit
//	                   TESTAPP_EXIT_CODE (default 3) without listening.
//	                   never-ready: listen, but /healthz answers 503.
//	                   exit-on-term: exit 0 at once on SIGTERM.
//	                   ignore-term: print "ignoring SIGTERM" and go on.
//	                   sleep: do nothing until killed (a helper child).
//	TESTAPP_HOST       address to listen on (default 127.0.0.1).
//	TESTAPP_CHILD      "1": start a child copy of itself (mode sleep) in
//	                   the same process group and print "child <pid>".
//	TESTAPP_BURN       a duration of CPU to burn in the child (with
//	                   TESTAPP_CHILD) or else in the app itself at start.
//
// GET /sick makes /healthz fail from then on (a hung app, for liveness);
// GET /exit?code=N exits with code N. For container tests: GET
// /fetch?url=U answers with U's body (one app reaching another);
// GET /alloc?mb=N allocates and touches N MiB and holds it; GET
// /file?path=P reads a file, PUT /file?path=P writes the request body to
// it.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	id := os.Getenv("SKIFF_INSTANCE")
	mode := os.Getenv("TESTAPP_MODE")
	if mode == "sleep" {
		burn()
		for {
			time.Sleep(time.Hour)
		}
	}
	// Caught from the very start, so a SIGTERM never finds the default
	// action (exit without a word) in place.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	fmt.Printf("started %s\n", id)
	if mode == "crash" {
		code := 3
		if v := os.Getenv("TESTAPP_EXIT_CODE"); v != "" {
			code, _ = strconv.Atoi(v)
		}
		fmt.Printf("crashing with code %d\n", code)
		os.Exit(code)
	}
	if os.Getenv("TESTAPP_CHILD") == "1" {
		startChild()
	} else {
		burn()
	}

	host := os.Getenv("TESTAPP_HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, os.Getenv("PORT")))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(2)
	}
	var sick atomic.Bool
	sick.Store(mode == "never-ready")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s\n", id, os.Getenv("SKIFF_RELEASE"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) {
		sick.Store(true)
		fmt.Println("now sick")
		fmt.Fprintln(w, "sick")
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Printf("exiting with code %d\n", code)
		os.Exit(code)
	})
	containerHandlers(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	for range sigs {
		switch mode {
		case "ignore-term":
			fmt.Println("ignoring SIGTERM")
			continue
		case "exit-on-term":
			os.Exit(0)
		}
		fmt.Println("got SIGTERM")
		time.Sleep(100 * time.Millisecond) // a short graceful pause
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(ctx)
		cancel()
		os.Exit(0)
	}
}

// startChild starts a copy of this program in sleep mode; it inherits the
// process group, so it belongs to the instance.
func startChild() {
	self, err := os.Executable()
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(2)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "TESTAPP_MODE=sleep")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("child:", err)
		os.Exit(2)
	}
	fmt.Printf("child %d\n", cmd.Process.Pid)
}

// burn uses TESTAPP_BURN of CPU time (not wall time: on a busy machine a
// wall-clock loop gets less CPU than asked).
func burn() {
	d, _ := time.ParseDuration(os.Getenv("TESTAPP_BURN"))
	if d <= 0 {
		return
	}
	x := 0
	for cpuTime() < d {
		for i := range 100000 {
			x += i
		}
	}
	if x == 42 {
		fmt.Println()
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return time.Hour
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
