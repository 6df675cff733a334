package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opmond/opmond/anchor"
)

// setupDownload builds download mode: the downloader is the daemon's global
// configuration, and Start runs its rounds (globalconf download). A missing
// or malformed anchor stops the daemon at start with one line naming the key.
func (d *Daemon) setupDownload(timeout time.Duration) error {
	g := d.cfg.GlobalConf
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opmond_globalconf_download_failures_total",
		Help: "Global configuration download rounds that failed, by cause.",
	}, []string{"cause"})
	for _, c := range anchor.Causes {
		failures.WithLabelValues(string(c))
	}
	rounds := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "opmond_globalconf_downloads_total",
		Help: "Global configuration download rounds that succeeded.",
	})
	dl, err := anchor.NewDownloader(anchor.DownloadOptions{
		Anchor:         g.Anchor,
		Directory:      g.Directory,
		Interval:       time.Duration(g.DownloadIntervalSeconds) * time.Second,
		RequestTimeout: timeout,
		Logger:         d.log.With().Str("component", "globalconf").Logger(),
		Now:            d.now,
		OnRound: func(err error) {
			if err == nil {
				rounds.Inc()
				return
			}
			failures.WithLabelValues(string(anchor.CauseOf(err))).Inc()
			d.metrics.backgroundErrors.WithLabelValues(taskGlobalConf).Inc()
		},
	})
	if err != nil {
		if anchor.CauseOf(err) == anchor.CauseWrite {
			return keyError("global-conf.directory", g.Directory, err.Error())
		}
		return keyError("global-conf.anchor", g.Anchor, err.Error())
	}
	d.metrics.reg.MustRegister(failures, rounds)
	d.download, d.gconf = dl, dl
	if err := dl.Valid(d.now()); err != nil {
		d.log.Warn().Err(err).Msg("no usable stored global configuration; queries are answered with the outdated-configuration fault until a download succeeds")
	} else {
		d.log.Info().Time("expiry", dl.Expiry()).Msg("stored global configuration in use until the first download")
	}
	return nil
}
