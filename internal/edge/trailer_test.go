package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEnginesTrailers sends a chunked request with trailers through every
// listener, as gRPC and checksumming uploads do, to an app that answers
// with trailers of its own, one announced in a Trailer header and one
// not: each side must get the other's trailers, with the values only
// known once the body was sent.
//
// Apps that speak h2c (gRPC servers) get them too, except behind the
// fasthttp listener and the raw engine (which hands such requests to
// fasthttp): fasthttp hands requests for h2c backends to net/http
// through its adaptor, which reads bodies whole and forwards no trailer.
func TestEnginesTrailers(t *testing.T) {
	const size = 256 << 10 // more than a read buffer: the body streams
	for _, listener := range append([]string{"nethttp"}, listeners...) {
		for _, h2c := range []bool{false, true} {
			if h2c && (listener == "fasthttp" || listener == "raw") {
				continue
			}
			name := listener
			if h2c {
				name += "/h2c-app"
			}
			t.Run(name, func(t *testing.T) { testTrailers(t, listener, h2c, size) })
		}
	}
}

func testTrailers(t *testing.T, listener string, h2c bool, size int64) {
	te := newListenerEdge(t, listener, Options{})
	type seen struct {
		sum, trailer string
		header       http.Header
		trailers     http.Header
	}
	got := make(chan seen, 1)
	app := newBackendProto(t, "app-1", h2c, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		io.Copy(h, r.Body)
		got <- seen{hex.EncodeToString(h.Sum(nil)), r.Trailer.Get("X-Body-Sum"), r.Header.Clone(), r.Trailer.Clone()}
		w.Header().Set("Trailer", "X-Answer-Sum")
		w.Header().Set("Content-Type", "text/plain")
		http.NewResponseController(w).Flush() // the answer is chunked
		io.WriteString(w, strings.Repeat("a", int(size)))
		w.Header().Set("X-Answer-Sum", "answer-sum")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		// A trailer may not bring back what the edge sets in a header.
		w.Header().Set(http.TrailerPrefix+"X-Request-Id", "from-a-trailer")
	})
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})

	body := &patternReader{n: size}
	sum := sha256.New()
	io.Copy(sum, &patternReader{n: size})
	want := hex.EncodeToString(sum.Sum(nil))
	req, err := http.NewRequest(http.MethodPost, te.url+"/upload", &trailerSetter{r: body, set: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.test"
	req.ContentLength = -1
	// The value is filled in once the body is sent, as a client
	// computing a checksum on the fly does.
	req.Trailer = http.Header{"X-Body-Sum": nil, "Forwarded": nil}
	req.Body.(*trailerSetter).set = func() {
		req.Trailer.Set("X-Body-Sum", want)
		req.Trailer.Set("Forwarded", "for=203.0.113.66")
	}
	res, err := te.client.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer res.Body.Close()
	wantProto(t, listener, res)
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil || n != size || res.StatusCode != http.StatusOK {
		t.Fatalf("answer: %d, %d bytes, %v; want 200 and %d bytes", res.StatusCode, n, err, size)
	}
	app1 := <-got
	if app1.sum != want {
		t.Errorf("the app got a different body")
	}
	if app1.trailer != want {
		t.Errorf("the app got request trailer X-Body-Sum %q, want %q", app1.trailer, want)
	}
	if v := app1.header.Get("X-Body-Sum"); v != "" {
		t.Errorf("the app got the request trailer as a header too: %q", v)
	}
	if v := res.Trailer.Get("X-Answer-Sum"); v != "answer-sum" {
		t.Errorf("client got announced response trailer X-Answer-Sum %q, want answer-sum", v)
	}
	if v := res.Trailer.Get("X-Late"); v != "late" {
		t.Errorf("client got unannounced response trailer X-Late %q, want late", v)
	}
	if v, ok := app1.trailers["Forwarded"]; ok {
		t.Errorf("the app got the client's Forwarded as a trailer: %q", v)
	}
	if v := app1.header.Get("Forwarded"); !strings.HasPrefix(v, "for=127.0.0.1;") {
		t.Errorf("the app got Forwarded %q, want the edge's, for=127.0.0.1", v)
	}
	if v, ok := res.Trailer["X-Request-Id"]; ok {
		t.Errorf("client got the app's X-Request-Id as a trailer: %q", v)
	}
	if v := res.Header.Get("X-Request-Id"); v == "" || v == "from-a-trailer" {
		t.Errorf("client got X-Request-Id %q, want the edge's id", v)
	}
	if v := res.Header.Get("X-Answer-Sum"); v != "" {
		t.Errorf("client got the response trailer as a header: %q", v)
	}
}

// newBackendProto is newBackendFunc for an app that speaks HTTP/1.1 or,
// with h2c, only HTTP/2 without TLS.
func newBackendProto(t *testing.T, name string, h2c bool, h http.HandlerFunc) Backend {
	t.Helper()
	if !h2c {
		return newBackendFunc(t, name, h)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return Backend{ID: name, Addr: srv.Listener.Addr().String(), Release: 1, H2C: true}
}

// trailerSetter reads r and calls set when it ends, before the transport
// reads the request's trailers.
type trailerSetter struct {
	r   io.Reader
	set func()
}

func (ts *trailerSetter) Read(p []byte) (int, error) {
	n, err := ts.r.Read(p)
	if err == io.EOF {
		ts.set()
	}
	return n, err
}

func (ts *trailerSetter) Close() error { return nil }
