package edge

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// errBodyDetached is what an abandoned upstream attempt reads from a
// request body once a retry has taken it over.
var errBodyDetached = errors.New("request body taken over by a retry")

// requestBody wraps a client's request body on its way upstream. It
// counts what was read (so a retry knows whether the body can still be
// sent whole), enforces the route's size limit, and gives each read a
// deadline, so a client that stops sending mid-body cannot hold a
// goroutine and an upstream connection for ever.
//
// An upstream transport may go on reading the body after its round trip
// failed; after detach, such reads fail instead of stealing bytes from the
// retry. Reads hold mu, so detach waits for one in progress.
type requestBody struct {
	mu       sync.Mutex
	src      io.ReadCloser
	n        int64 // bytes read so far
	max      int64 // 0: no limit
	gen      int   // attempt that owns the body
	timeout  time.Duration
	deadline func(time.Time) error // the client connection's read deadline; may be nil
	done     bool                  // src returned EOF or an error
}

// view is one upstream attempt's handle on the body.
type bodyView struct {
	b   *requestBody
	gen int
}

func (v *bodyView) Read(p []byte) (int, error) { return v.b.read(v.gen, p) }

// Close does not close the client's body: the server does that when the
// handler returns, and a retry may still need it.
func (v *bodyView) Close() error { return nil }

func (b *requestBody) read(gen int, p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.gen {
		return 0, errBodyDetached
	}
	if b.done {
		return 0, io.EOF
	}
	if b.max > 0 && int64(len(p)) > b.max-b.n+1 {
		// Read at most one byte past the limit: enough to know it was
		// crossed.
		p = p[:b.max-b.n+1]
	}
	if b.deadline != nil && b.timeout > 0 {
		b.deadline(time.Now().Add(b.timeout))
	}
	n, err := b.src.Read(p)
	b.n += int64(n)
	if b.max > 0 && b.n > b.max {
		b.finish()
		return n, &http.MaxBytesError{Limit: b.max}
	}
	if err != nil {
		b.finish()
	}
	return n, err
}

// finish lifts the read deadline once the body is over: the server reads
// the connection in the background after that, and a stale deadline there
// would cancel a long response.
func (b *requestBody) finish() {
	b.done = true
	if b.deadline != nil && b.timeout > 0 {
		b.deadline(time.Time{})
	}
}

// detach hands the body to a new attempt if none of it was read yet, and
// reports whether it did.
func (b *requestBody) detach() (*bodyView, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n > 0 {
		return nil, false
	}
	b.gen++
	return &bodyView{b: b, gen: b.gen}, true
}

// read returns how many bytes of the body were read.
func (b *requestBody) bytesRead() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
