package postgres

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Registry's collectors. They exist without a Registerer too,
// so that the code updating them has no branches.
type metrics struct {
	up            prometheus.Gauge
	reconnects    prometheus.Counter
	notifications prometheus.Counter
	bad           prometheus.Counter
	all           []prometheus.Collector
}

func newMetrics(r *Registry) *metrics {
	m := &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsproof_registry_db_up",
			Help: "1 while the registry holds a working connection to the key database, else 0.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsproof_registry_db_reconnects_total",
			Help: "Successful reconnections to the key database after losing it.",
		}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsproof_registry_db_notifications_total",
			Help: "Change notifications received from the key database.",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsproof_registry_db_bad_entries_total",
			Help: "Registry rows refused (treated as absent) because their entry does not load or disagrees with its columns; each distinct bad row counts once.",
		}),
	}
	lastContact := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsproof_registry_db_last_contact_timestamp_seconds",
		Help: "Unix time of the last successful exchange with the key database.",
	}, func() float64 { return float64(r.lastContact.Load()) / 1e9 })
	keys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsproof_registry_keys",
		Help: "Entries in the registry in use, revoked ones included.",
	}, func() float64 { return float64(r.Status().Keys) })
	m.all = []prometheus.Collector{m.up, m.reconnects, m.notifications, m.bad, lastContact, keys}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range m.all {
		if err := reg.Register(c); err != nil {
			for _, done := range m.all[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}
