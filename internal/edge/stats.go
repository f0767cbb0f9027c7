package edge

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Stats are a backend's request figures since it joined the edge:
// cumulative, so a reader takes two and subtracts (Sub) to judge a
// window. A rollout judges a new release by them (error rate, p95).
type Stats struct {
	// Requests counts answers and failures.
	Requests int64
	// Errors counts 5xx answers and requests that got no answer.
	Errors int64
	// Latency counts answers by the time to their response headers, in
	// the buckets of latencyBucket.
	Latency [latencyBuckets]int64
}

// latencyBuckets covers 1µs to over a minute with four buckets per power
// of two, so a percentile is within 19% of the true value.
const latencyBuckets = 27 * 4

// latencyBucket returns the bucket of d: its microseconds' power of two
// and the two bits after the leading one.
func latencyBucket(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 1))
	exp := bits.Len64(us) - 1
	var sub uint64
	if exp >= 2 {
		sub = (us >> (exp - 2)) & 3
	} else {
		sub = (us << (2 - exp)) & 3
	}
	return min(exp*4+int(sub), latencyBuckets-1)
}

// bucketUpper is the largest duration bucket i holds.
func bucketUpper(i int) time.Duration {
	exp, sub := i/4, uint64(i%4)
	us := (uint64(4) + sub + 1) << exp >> 2
	return time.Duration(us) * time.Microsecond
}

// Sub returns the figures of the window between prev and s.
func (s Stats) Sub(prev Stats) Stats {
	out := Stats{Requests: s.Requests - prev.Requests, Errors: s.Errors - prev.Errors}
	for i := range s.Latency {
		out.Latency[i] = s.Latency[i] - prev.Latency[i]
	}
	return out
}

// Add returns the sum of two backends' figures.
func (s Stats) Add(o Stats) Stats {
	out := Stats{Requests: s.Requests + o.Requests, Errors: s.Errors + o.Errors}
	for i := range s.Latency {
		out.Latency[i] = s.Latency[i] + o.Latency[i]
	}
	return out
}

// ErrorRate is Errors as a share of Requests, 0 without requests.
func (s Stats) ErrorRate() float64 {
	if s.Requests <= 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Percentile returns the response time under which the share q (0-1) of
// answers fell, rounded up to its bucket's bound; 0 without answers.
func (s Stats) Percentile(q float64) time.Duration {
	var n int64
	for _, c := range s.Latency {
		n += c
	}
	if n <= 0 {
		return 0
	}
	rank := int64(q*float64(n) + 0.999999)
	var seen int64
	for i, c := range s.Latency {
		seen += c
		if seen >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(latencyBuckets - 1)
}

// stats is where a backend counts its requests, lock-free.
type stats struct {
	requests atomic.Int64
	errors   atomic.Int64
	latency  [latencyBuckets]atomic.Int64
}

// answered counts a response with status after d.
func (s *stats) answered(d time.Duration, status int) {
	s.requests.Add(1)
	if status >= 500 {
		s.errors.Add(1)
	}
	s.latency[latencyBucket(d)].Add(1)
}

// unanswered counts a request that got no response.
func (s *stats) unanswered() {
	s.requests.Add(1)
	s.errors.Add(1)
}

func (s *stats) read() Stats {
	out := Stats{Requests: s.requests.Load(), Errors: s.errors.Load()}
	for i := range s.latency {
		out.Latency[i] = s.latency[i].Load()
	}
	return out
}

// Stats returns the figures of the backends with ids that the edge still
// knows, summed; ids it does not know add nothing.
func (e *Edge) Stats(ids []string) Stats {
	var sum Stats
	for _, id := range ids {
		if b := e.pool.get(id); b != nil {
			sum = sum.Add(b.stats.read())
		}
	}
	return sum
}

// LatencyBucket is the index in Stats.Latency that counts an answer
// after d, for callers that build Stats themselves (tests).
func LatencyBucket(d time.Duration) int { return latencyBucket(d) }
