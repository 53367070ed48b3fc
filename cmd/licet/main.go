// Command licet runs every licet role: vendor, site, and the development
// all-in-one. See 'licet --help'.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "licet:", err)
	}
	os.Exit(errs.ExitCode(err))
}
