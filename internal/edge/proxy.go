package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// maxIdlePerBackend is how many idle keep-alive connections the edge keeps
// to one instance. The standard library's default of 2 would make a busy
// edge dial a new connection for most requests.
const maxIdlePerBackend = 128

// requestInfo travels in the request's context from ServeHTTP to the
// proxy's hooks, which see only the request.
type requestInfo struct {
	id  string
	app string
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// newTransport makes one backend's upstream transport: HTTP/1.1 to a
// loopback or cluster address, never through an environment proxy, and
// without transparent gzip, which would change what the client gets.
func newTransport(o Options) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConnsPerHost:   maxIdlePerBackend,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// newProxy makes the reverse proxy for one backend. Requests keep their
// Host header, so apps see the name the client used; the client's own
// X-Forwarded-* headers are dropped (Rewrite does that) and replaced with
// what the edge saw, as no proxy in front of the edge is trusted yet.
func newProxy(b *backend, buffers httputil.BufferPool, logger *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = b.addr
			pr.SetXForwarded()
			pr.Out.Header.Set(requestIDHeader, infoFrom(pr.In.Context()).id)
		},
		Transport: b.transport,
		// Flush every write at once: server-sent events and other streams
		// must not wait in the edge's buffer.
		FlushInterval: -1,
		BufferPool:    buffers,
		ModifyResponse: func(res *http.Response) error {
			// The edge's id wins over one the app may have set, so the
			// client sees the id the edge logged.
			res.Header.Set(requestIDHeader, res.Request.Header.Get(requestIDHeader))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ri := infoFrom(r.Context())
			// A transport error wrapped in a *url.Error would carry the
			// URL, and a query string may hold a token: log the cause only.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			level := slog.LevelWarn
			if r.Context().Err() != nil {
				level = slog.LevelDebug // the client left; nothing is wrong upstream
			}
			logger.Log(r.Context(), level, "upstream request failed",
				"app", ri.app, "backend", b.id, "addr", b.addr, "release", b.release,
				"request_id", ri.id, "method", r.Method, "path", r.URL.Path, "err", err)
			writePage(w, http.StatusBadGateway, ri.id, badGatewayPage(ri.app, ri.id))
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// bufferPool lends 32 KiB copy buffers to every proxy, so streaming a body
// does not allocate one per request.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}}}
}

func (bp *bufferPool) Get() []byte { return *bp.p.Get().(*[]byte) }

func (bp *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	b = b[:copyBufferSize]
	bp.p.Put(&b)
}

var _ httputil.BufferPool = (*bufferPool)(nil)
