package edge

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamingFlushedImmediately checks that each write of a streaming
// response reaches the client while the app is still writing: the app
// waits for the client to have read the first event before it sends the
// second, so a buffering edge would time out.
func TestStreamingFlushedImmediately(t *testing.T) {
	tests := []struct {
		name, contentType string
		length            bool // announce Content-Length
	}{
		{"server-sent events", "text/event-stream", false},
		{"chunked stream", "application/octet-stream", false},
		// ReverseProxy flushes the two above on its own; a stream of known
		// length is flushed only because of FlushInterval -1.
		{"stream of known length", "application/octet-stream", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEdge(t, Options{})
			gotFirst := make(chan struct{})
			be := newBackendFunc(t, "b", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.length {
					w.Header().Set("Content-Length", "22")
				}
				io.WriteString(w, "data: one\n\n")
				http.NewResponseController(w).Flush()
				select {
				case <-gotFirst:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "data: two\n\n")
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, te.url+"/events", nil)
			req.Host = "app.localhost"
			res, err := te.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			first, err := readEvent(br)
			if err != nil {
				t.Fatalf("first event not delivered before the app finished: %v", err)
			}
			close(gotFirst)
			second, err := readEvent(br)
			if err != nil {
				t.Fatalf("second event: %v", err)
			}
			if first != "data: one" || second != "data: two" {
				t.Fatalf("events %q, %q; want \"data: one\", \"data: two\"", first, second)
			}
		})
	}
}

func readEvent(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if _, err := br.ReadString('\n'); err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// echoUpgradeBackend answers an upgrade to "websocket" with 101 and then
// echoes bytes until the client closes, as a WebSocket server would keep
// its connection.
func echoUpgradeBackend(t *testing.T, name string) Backend {
	return newBackendFunc(t, name, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 512)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				conn.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
}

// dialUpgrade opens a raw connection to the edge (with TLS, asking for
// HTTP/1.1, on the TLS listener) and upgrades it.
func dialUpgrade(t *testing.T, te *testEdge, host string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn := te.dial(t)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /socket HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", host)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	return conn, br, res
}

func TestUpgradePassesThrough(t *testing.T) {
	te := newTestEdge(t, Options{})
	be := echoUpgradeBackend(t, "ws")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})

	conn, br, res := dialUpgrade(t, te, "app.localhost")
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade answered %d with Upgrade %q, want 101 websocket", res.StatusCode, res.Header.Get("Upgrade"))
	}
	if res.Header.Get("X-Request-Id") == "" {
		t.Error("101 response has no X-Request-Id")
	}
	for _, msg := range []string{"hello\n", "again\n"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo of %q = %q, %v", msg, got, err)
		}
	}
	if n := te.InFlight("ws"); n != 1 {
		t.Fatalf("InFlight with an open upgraded connection = %d, want 1", n)
	}
	conn.Close()
	waitFor(t, 10*time.Second, func() bool { return te.InFlight("ws") == 0 }, "the closed upgraded connection to leave the in-flight count")
}

// TestLargeBodiesStreamed sends 64 MiB each way. The sender pauses after
// the first MiB until the receiver has it, so an edge that buffered a
// whole body before passing it on would stall and time out.
func TestLargeBodiesStreamed(t *testing.T) {
	const size, head = 64 << 20, 1 << 20
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	// send writes size bytes of the pattern, waiting after head bytes.
	send := func(w io.Writer, flush func() error, wait <-chan struct{}) error {
		for sent := 0; sent < size; sent += len(chunk) {
			if sent == head {
				if flush != nil {
					flush()
				}
				select {
				case <-wait:
				case <-time.After(15 * time.Second):
					return errors.New("receiver never got the first MiB: the body was buffered")
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	}
	// receive reads a body, signalling once head bytes are in, and returns
	// its length and hash.
	receive := func(r io.Reader, got chan<- struct{}) (int64, string, error) {
		h := sha256.New()
		n, err := io.CopyN(h, r, head)
		if err != nil {
			return n, "", err
		}
		close(got)
		m, err := io.Copy(h, r)
		return n + m, hex.EncodeToString(h.Sum(nil)), err
	}
	want := sha256.New()
	for range size / len(chunk) {
		want.Write(chunk)
	}
	wantSum := hex.EncodeToString(want.Sum(nil))

	t.Run("response", func(t *testing.T) {
		te := newTestEdge(t, Options{})
		clientGot := make(chan struct{})
		be := newBackendFunc(t, "big", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(size))
			send(w, http.NewResponseController(w).Flush, clientGot)
		})
		te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
		req, _ := http.NewRequest(http.MethodGet, te.url+"/big", nil)
		req.Host = "app.localhost"
		res, err := te.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		n, sum, err := receive(res.Body, clientGot)
		if err != nil || n != size || sum != wantSum {
			t.Fatalf("response body: %d bytes, sha256 %s, err %v; want %d bytes, sha256 %s", n, sum, err, size, wantSum)
		}
	})

	t.Run("request", func(t *testing.T) {
		te := newTestEdge(t, Options{})
		appGot := make(chan struct{})
		be := newBackendFunc(t, "big", func(w http.ResponseWriter, r *http.Request) {
			n, sum, err := receive(r.Body, appGot)
			fmt.Fprintf(w, "%d %s %v", n, sum, err)
		})
		te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
		pr, pw := io.Pipe()
		sendErr := make(chan error, 1)
		go func() {
			err := send(pw, nil, appGot)
			pw.CloseWithError(err)
			sendErr <- err
		}()
		res, body := te.do(t, http.MethodPost, "app.localhost", "/upload", pr, nil)
		if err := <-sendErr; err != nil {
			t.Fatalf("send: %v", err)
		}
		if want := fmt.Sprintf("%d %s <nil>", size, wantSum); res.StatusCode != 200 || body != want {
			t.Fatalf("app received %d %q, want 200 %q", res.StatusCode, body, want)
		}
	})
}
