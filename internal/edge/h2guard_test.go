package edge

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client writes what an HTTP/2 client would send, frame by frame.
type h2Client struct {
	buf bytes.Buffer
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func newH2Client() *h2Client {
	c := &h2Client{}
	c.buf.WriteString(http2.ClientPreface)
	c.fr = http2.NewFramer(&c.buf, nil)
	c.enc = hpack.NewEncoder(&c.hb)
	return c
}

// block HPACK-encodes a request's fields (pairs of name and value).
func (c *h2Client) block(fields ...string) []byte {
	c.hb.Reset()
	for i := 0; i < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hb.Bytes())
}

// request writes HEADERS for a GET on stream with extra fields.
func (c *h2Client) request(stream uint32, extra ...string) {
	fields := append([]string{":method", "GET", ":scheme", "https", ":authority", "app.localhost", ":path", "/"}, extra...)
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: c.block(fields...), EndStream: true, EndHeaders: true})
}

// readConn is a connection whose client side has written r.
type readConn struct {
	net.Conn
	r io.Reader
}

func (c readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// throughGuard returns what the server reads through an h2Guard from a
// client that sent in, delivered in pieces of chunk bytes.
func throughGuard(t *testing.T, in []byte, chunk int) []byte {
	t.Helper()
	g := newH2Guard(readConn{r: &chunkReader{b: in, n: chunk}}, tls.ConnectionState{}, 1<<20)
	out, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// serverFrames reads out as the edge's HTTP/2 server does: preface, then
// frames with header blocks decoded. A SETTINGS frame comes back as its
// []http2.Setting, a header block as its fields ("name: value" lines), a
// frame that fails to read as its http2.StreamError.
func serverFrames(t *testing.T, out []byte) []any {
	t.Helper()
	if !bytes.HasPrefix(out, []byte(http2.ClientPreface)) {
		t.Fatalf("server reads %q, want the client preface first", out[:min(len(out), 24)])
	}
	fr := http2.NewFramer(io.Discard, bytes.NewReader(out[len(http2.ClientPreface):]))
	fr.ReadMetaHeaders = hpack.NewDecoder(h2HeaderTableSize, nil)
	fr.SetMaxReadFrameSize(h2MaxFrameSize)
	var frames []any
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			var se http2.StreamError
			if !errors.As(err, &se) {
				t.Fatalf("server reads a broken connection: %v", err)
			}
			frames = append(frames, se)
			continue
		}
		// A frame is valid only until the next read.
		switch f := f.(type) {
		case *http2.SettingsFrame:
			var settings []http2.Setting
			f.ForeachSetting(func(s http2.Setting) error {
				settings = append(settings, s)
				return nil
			})
			frames = append(frames, settings)
		case *http2.MetaHeadersFrame:
			var b strings.Builder
			for _, hf := range f.Fields {
				fmt.Fprintf(&b, "%s: %s\n", hf.Name, hf.Value)
			}
			frames = append(frames, b.String())
		default:
			frames = append(frames, fmt.Sprintf("%T", f))
		}
	}
}

func TestH2GuardPassesValidFramesUnchanged(t *testing.T) {
	tests := []struct {
		name  string
		write func(c *h2Client)
	}{
		{"settings without repeats", func(c *h2Client) {
			c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
			c.fr.WriteSettingsAck()
		}},
		{"requests with TE trailers and a body", func(c *h2Client) {
			c.fr.WriteSettings()
			block := c.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/up", "te", "trailers", "x-big", strings.Repeat("v", 3000))
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:100], EndHeaders: false})
			c.fr.WriteContinuation(1, false, block[100:2000])
			c.fr.WriteContinuation(1, true, block[2000:])
			c.fr.WriteData(1, false, bytes.Repeat([]byte("d"), h2MaxFrameSize))
			c.fr.WriteDataPadded(1, false, []byte("padded"), make([]byte, 10))
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("x-checksum", "abc"), EndStream: true, EndHeaders: true})
			c.request(3, "x-big", strings.Repeat("v", 3000)) // indexed since stream 1
		}},
		{"padded and prioritised headers", func(c *h2Client) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/"),
				EndStream: true, EndHeaders: true, PadLength: 7, Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}})
		}},
		{"other frames", func(c *h2Client) {
			c.fr.WritePing(false, [8]byte{1})
			c.fr.WriteWindowUpdate(0, 1000)
			c.fr.WritePriority(5, http2.PriorityParam{StreamDep: 3, Weight: 1})
			c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			c.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newH2Client()
			tc.write(c)
			in := c.buf.Bytes()
			for _, chunk := range []int{1, 7, 1 << 20} {
				if out := throughGuard(t, in, chunk); !bytes.Equal(out, in) {
					t.Fatalf("read in pieces of %d: the server reads %d bytes, want the client's %d unchanged", chunk, len(out), len(in))
				}
			}
		})
	}
}

func TestH2GuardFoldsRepeatedSettings(t *testing.T) {
	c := newH2Client()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1},
	)
	c.request(1)
	frames := serverFrames(t, throughGuard(t, c.buf.Bytes(), 5))
	settings, ok := frames[0].([]http2.Setting)
	if !ok || len(frames) != 2 {
		t.Fatalf("server reads %v, want SETTINGS then HEADERS", frames)
	}
	if got, want := fmt.Sprint(settings), "[[MAX_FRAME_SIZE = 20000] [INITIAL_WINDOW_SIZE = 1]]"; got != want {
		t.Fatalf("server reads settings %s, want %s: each identifier's last value, once", got, want)
	}
}

func TestH2GuardRejectsConnectionSpecificFields(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		// split sends the block as HEADERS and CONTINUATION frames.
		split bool
	}{
		{"connection", []string{"connection", "keep-alive"}, false},
		{"keep-alive", []string{"keep-alive", "timeout=5"}, false},
		{"proxy-connection", []string{"proxy-connection", "keep-alive"}, false},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}, false},
		{"upgrade", []string{"upgrade", "websocket"}, false},
		{"TE other than trailers", []string{"te", "trailers, deflate"}, false},
		{"TE gzip in a CONTINUATION", []string{"x-a", strings.Repeat("a", 50), "te", "gzip"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newH2Client()
			// x-index enters the dynamic table with the bad request; the
			// next one refers to it, so it decodes right only if the
			// server's HPACK state has every block.
			fields := append([]string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/", "x-index", "kept"}, tc.fields...)
			block := c.block(fields...)
			if tc.split {
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:len(block)-3], EndStream: true})
				c.fr.WriteContinuation(1, true, block[len(block)-3:])
			} else {
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true})
			}
			c.request(3, "x-index", "kept")
			frames := serverFrames(t, throughGuard(t, c.buf.Bytes(), 1<<20))
			if len(frames) != 2 {
				t.Fatalf("server reads %d frames, want 2", len(frames))
			}
			if se, ok := frames[0].(http2.StreamError); !ok || se.StreamID != 1 || se.Code != http2.ErrCodeProtocol {
				t.Fatalf("server reads %v for stream 1, want a stream error PROTOCOL_ERROR", frames[0])
			}
			want := ":method: GET\n:scheme: https\n:authority: app.localhost\n:path: /\nx-index: kept\n"
			if got := frames[1]; got != want {
				t.Fatalf("server reads the next request as\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestConnectionSpecific(t *testing.T) {
	tests := []struct {
		name, field, value string
		want               bool
	}{
		{"te trailers", "te", "trailers", false},
		{"te trailers with spaces", "te", " Trailers ", false},
		{"te gzip", "te", "gzip", true},
		{"te list", "te", "trailers, gzip", true},
		{"connection", "connection", "close", true},
		{"ordinary", "x-connection", "close", false},
		{"cookie", "cookie", "a=b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := connectionSpecific(tc.field, tc.value); got != tc.want {
				t.Fatalf("connectionSpecific(%q, %q) = %v, want %v", tc.field, tc.value, got, tc.want)
			}
		})
	}
}

// h2Conn is a raw HTTP/2 client connection to the edge's TLS listener.
type h2Conn struct {
	*h2Client
	conn *tls.Conn
	rd   *http2.Framer
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &h2Conn{h2Client: newH2Client(), conn: conn}
	c.rd = http2.NewFramer(io.Discard, conn)
	c.rd.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.WriteSettings()
	c.flush(t)
	return c
}

func (c *h2Conn) flush(t *testing.T) {
	t.Helper()
	if _, err := c.conn.Write(c.buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.buf.Reset()
}

// until reads frames until one for which done is true.
func (c *h2Conn) until(t *testing.T, what string, done func(http2.Frame) bool) http2.Frame {
	t.Helper()
	for {
		f, err := c.rd.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if done(f) {
			return f
		}
	}
}

func TestH2GuardOnTLSListener(t *testing.T) {
	e := New(Options{Logger: quietLogger})
	be := newBackend(t, "app answers")
	e.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
	addr, _ := serveEdgeTLS(t, e)
	c := dialH2(t, addr)

	// A malformed request is reset; the connection goes on serving.
	c.request(1, "connection", "keep-alive")
	c.request(3)
	c.flush(t)
	rst := c.until(t, "RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got RST_STREAM %v on stream %d, want PROTOCOL_ERROR on stream 1", rst.ErrCode, rst.StreamID)
	}
	data := c.until(t, "the answer to stream 3", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamID == 3 && len(d.Data()) > 0
	}).(*http2.DataFrame)
	if string(data.Data()) != "app answers" {
		t.Fatalf("stream 3 got %q, want the app's answer", data.Data())
	}
}

// TestH2GuardKeepsOrdinaryTraffic sends what real clients send through
// the guard, to a server built as NewServer builds the edge's (the edge
// itself does not pass request trailers on): many concurrent streams, a
// large upload, request trailers.
func TestH2GuardKeepsOrdinaryTraffic(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x trailer=%q", n, h.Sum(nil), r.Trailer.Get("X-Checksum"))
	})}
	configureHTTP2(srv)
	certFile, keyFile, roots := selfSignedFiles(t)
	cfg, err := LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.localhost"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	post := func(body []byte, trailer string) (string, error) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/", bytes.NewReader(body))
		if trailer != "" {
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Checksum": {trailer}}
		}
		res, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		if res.ProtoMajor != 2 {
			return "", fmt.Errorf("got %s, want HTTP/2", res.Proto)
		}
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	want := func(body []byte, trailer string) string {
		return fmt.Sprintf("%d %x trailer=%q", len(body), sha256.Sum256(body), trailer)
	}

	t.Run("large upload with trailers", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
		got, err := post(body, "sum")
		if err != nil || got != want(body, "sum") {
			t.Fatalf("got %q, %v; want %q", got, err, want(body, "sum"))
		}
	})
	t.Run("many concurrent streams", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Go(func() {
				body := bytes.Repeat([]byte{byte(i)}, 1000*i)
				got, err := post(body, "")
				if err == nil && got != want(body, "") {
					err = fmt.Errorf("request %d got %q, want %q", i, got, want(body, ""))
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
