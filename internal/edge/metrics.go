package edge

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the edge's Prometheus series. Series are per app; a route's
// children are looked up when a snapshot is applied, so a request only
// adds to counters it already holds.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	inFlight       *prometheus.GaugeVec
	upstreamErrors *prometheus.CounterVec
	bytesIn        *prometheus.CounterVec
	bytesOut       *prometheus.CounterVec
	retries        *prometheus.CounterVec
	unrouted       prometheus.Counter
	logDropped     prometheus.Counter

	mu   sync.Mutex
	apps map[string]*appMetrics
}

// appMetrics are one app's series.
type appMetrics struct {
	// byClass is indexed by status/100: 1xx to 5xx; 0 for anything else.
	byClass           [6]prometheus.Counter
	duration          prometheus.Observer
	inFlight          prometheus.Gauge
	connectErrors     prometheus.Counter
	responseErrors    prometheus.Counter
	bytesIn, bytesOut prometheus.Counter
	retries           prometheus.Counter
}

var statusClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_edge_requests_total",
			Help: "Requests the edge answered for an app, by status class.",
		}, []string{"app", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skiff_edge_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"app"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_edge_requests_in_flight",
			Help: "Requests being proxied to an app now, upgraded connections included.",
		}, []string{"app"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_edge_upstream_errors_total",
			Help: "Upstream attempts that got no response: kind connect (could not connect) or response (failed after connecting).",
		}, []string{"app", "kind"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_edge_request_bytes_total",
			Help: "Request body bytes read from clients.",
		}, []string{"app"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_edge_response_bytes_total",
			Help: "Response body bytes written to clients.",
		}, []string{"app"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_edge_retries_total",
			Help: "Requests sent again to another backend after an upstream failure.",
		}, []string{"app"}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_edge_unrouted_requests_total",
			Help: "Requests for a host and path that no app serves (answered 404).",
		}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_edge_access_log_dropped_total",
			Help: "Access log lines dropped because the writer fell behind.",
		}),
		apps: map[string]*appMetrics{},
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inFlight, m.upstreamErrors,
			m.bytesIn, m.bytesOut, m.retries, m.unrouted, m.logDropped)
	}
	return m
}

// forApp returns app's series, making them on first use.
func (m *metrics) forApp(app string) *appMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if am := m.apps[app]; am != nil {
		return am
	}
	am := &appMetrics{
		duration:       m.duration.WithLabelValues(app),
		inFlight:       m.inFlight.WithLabelValues(app),
		connectErrors:  m.upstreamErrors.WithLabelValues(app, "connect"),
		responseErrors: m.upstreamErrors.WithLabelValues(app, "response"),
		bytesIn:        m.bytesIn.WithLabelValues(app),
		bytesOut:       m.bytesOut.WithLabelValues(app),
		retries:        m.retries.WithLabelValues(app),
	}
	for i, c := range statusClasses {
		am.byClass[i] = m.requests.WithLabelValues(app, c)
	}
	m.apps[app] = am
	return am
}

// keepOnly deletes the series of apps not in keep, so a destroyed app's
// series do not stay forever. Requests still in flight for such an app
// add to children no longer exported, which is harmless.
func (m *metrics) keepOnly(keep map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for app := range m.apps {
		if keep[app] {
			continue
		}
		delete(m.apps, app)
		l := prometheus.Labels{"app": app}
		m.requests.DeletePartialMatch(l)
		m.duration.DeletePartialMatch(l)
		m.inFlight.DeletePartialMatch(l)
		m.upstreamErrors.DeletePartialMatch(l)
		m.bytesIn.DeletePartialMatch(l)
		m.bytesOut.DeletePartialMatch(l)
		m.retries.DeletePartialMatch(l)
	}
}

func (am *appMetrics) upstreamError(connect bool) {
	if connect {
		am.connectErrors.Inc()
		return
	}
	am.responseErrors.Inc()
}

// record adds one finished request.
func (am *appMetrics) record(status int, seconds float64, in, out int64) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	am.byClass[class].Inc()
	am.duration.Observe(seconds)
	if in > 0 {
		am.bytesIn.Add(float64(in))
	}
	if out > 0 {
		am.bytesOut.Add(float64(out))
	}
}
