package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/licet/licet/licensing/licenseserver"
)

// DefaultCertCheck is how often 'licet site serve' reads its site
// certificate file again, to take a renewal done by another process.
const DefaultCertCheck = time.Minute

// watchSiteCertificate makes a running 'site serve' take a renewed site
// certificate without a restart: it reads the certificate file again on
// SIGHUP and every every (never if every is 0) until ctx ends, and swaps a
// newer certificate of the same site in for every reader
// (Identity.ReloadCertificate). A site that gets its first certificate this
// way starts its challenge pools with pools. It returns at once; SIGHUP is
// caught from then on.
func watchSiteCertificate(ctx context.Context, srv *licenseserver.Server, log *slog.Logger, every time.Duration, pools licenseserver.PoolOptions) {
	var lastErr string // a refused file is reported once, not every check
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var tick <-chan time.Time
	var ticker *time.Ticker
	if every > 0 {
		ticker = time.NewTicker(every)
		tick = ticker.C
	}
	go func() {
		defer signal.Stop(hup)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				lastErr = reloadSiteCertificate(ctx, srv, log, "SIGHUP", pools, "")
			case <-tick:
				lastErr = reloadSiteCertificate(ctx, srv, log, "periodic check", pools, lastErr)
			}
		}
	}()
}

// reloadSiteCertificate reads the site certificate again and logs what
// happened: the new certificate's end, or why the file was not used (the
// certificate in use stays; not logged again if it is lastErr). It returns
// the refusal, or "". Keys are never logged.
func reloadSiteCertificate(ctx context.Context, srv *licenseserver.Server, log *slog.Logger, trigger string, pools licenseserver.PoolOptions, lastErr string) string {
	old := srv.ID.Site()
	site, err := srv.ID.ReloadCertificate(srv.Now())
	switch {
	case err != nil:
		if err.Error() != lastErr {
			log.Warn("site certificate not reloaded: "+err.Error(), "site", srv.ID.SiteID, "trigger", trigger)
		}
		return err.Error()
	case site == nil:
		if trigger == "SIGHUP" {
			log.Info("site certificate unchanged", "site", srv.ID.SiteID, "trigger", trigger)
		}
	case old == nil:
		log.Info("site certificate installed: the site issues licenses from now on", "site", site.SiteID, "customer", site.CustomerID,
			"not_after", site.Cert.NotAfter.UTC().Format(time.RFC3339), "trigger", trigger)
		if err := srv.StartChallengePools(ctx, pools); err != nil {
			log.Warn("challenge pools not started; they start with the first challenge", "err", err)
		}
	default:
		log.Info("site certificate renewed: licenses are signed with the new certificate from now on", "site", site.SiteID,
			"not_after", site.Cert.NotAfter.UTC().Format(time.RFC3339), "previous_not_after", old.Cert.NotAfter.UTC().Format(time.RFC3339), "trigger", trigger)
	}
	return ""
}
