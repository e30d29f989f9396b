package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsproof/wsproof/protocol"
)

// metrics are the server's Prometheus collectors. They exist even when no
// Registerer is configured, so the code that updates them has no branches.
type metrics struct {
	handshakes  *prometheus.CounterVec
	latency     prometheus.Histogram
	sessions    prometheus.Gauge
	refreshes   *prometheus.CounterVec
	revocations prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsproof_handshakes_total",
			Help: "Handshakes by outcome (ok or refused) and spec error code.",
		}, []string{"outcome", "code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wsproof_handshake_duration_seconds",
			Help:    "Time from upgrade to accept of successful handshakes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsproof_sessions",
			Help: "Live authenticated sockets.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsproof_refreshes_total",
			Help: "In-band refreshes by result: ok or the spec error code that ended the session.",
		}, []string{"result"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsproof_revocation_closes_total",
			Help: "Live sockets closed with session_revoked after a registry change.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.handshakes, m.latency, m.sessions, m.refreshes, m.revocations} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// handshake counts one handshake; code "" is a success.
func (m *metrics) handshake(code protocol.Code) {
	if code == "" {
		m.handshakes.WithLabelValues("ok", "").Inc()
		return
	}
	m.handshakes.WithLabelValues("refused", string(code)).Inc()
}
