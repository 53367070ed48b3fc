package cli

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
)

// vendorReportCommand is 'licet vendor report': the sites' signed usage
// reports (issue 12).
func vendorReportCommand() *command {
	return &command{name: "report", summary: "sites' signed usage reports: import and check, list", sub: []*command{
		leaf("import", "check a site's usage report file and record it with what is wrong with it", vendorReportImport),
		leaf("list", "list the usage reports received, with their flags", vendorReportList),
	}}
}

func vendorReportImport(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor report import", "FILE",
		"Checks a site's signed usage report (from 'licet site report --signed -o FILE'): the site's\n"+
			"certificate and signature, then what a customer re-issuing what it bought would show:\n"+
			"a license ID listed twice or for another client than in the previous report\n"+
			"(duplicate_serial), more seats or temporary licenses in use than sold (over_quantity),\n"+
			"license IDs outside their pack (outside_range) or of packs never sold to the site\n"+
			"(unknown_pack), and a report that does not continue the site's last one (chain_break).\n"+
			"The report is recorded with its flags; exit 0 when there are none, 3 otherwise.")
	a := vendorAdmin(e, fs)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	file, err := readInput(fs.Arg(0))
	if err != nil {
		return err
	}
	rec, err := a.client(e).UploadUsageReport(ctx, file)
	if err != nil {
		return err
	}
	if err := printUsageRecord(e, *a.json, rec); err != nil {
		return err
	}
	if len(rec.Flags) > 0 {
		kinds := make([]string, len(rec.Flags))
		for i, f := range rec.Flags {
			kinds[i] = f.Kind
		}
		return errs.E(errs.Conflict, "usage report %d of site %s is flagged: %s", rec.Sequence, rec.SiteID, strings.Join(kinds, ", "))
	}
	return nil
}

func vendorReportList(ctx context.Context, e *env, args []string) error {
	fs := flagSet(e, "licet vendor report list", "[--site ID]", "Lists the usage reports received, oldest first, with their flags.")
	a := vendorAdmin(e, fs)
	site := fs.String("site", "", "only this site's reports")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var recs []*clearinghouse.UsageRecord
	if err := a.client(e).Get(ctx, "/v1/usage-reports?site="+url.QueryEscape(*site), &recs); err != nil {
		return err
	}
	if *a.json {
		return printJSON(e.stdout, recs)
	}
	var rows [][]string
	for _, r := range recs {
		var kinds []string
		for _, f := range r.Flags {
			kinds = append(kinds, f.Kind)
		}
		rows = append(rows, []string{r.SiteID, fmt.Sprint(r.Sequence), r.Hash[:16], r.Received.Format("2006-01-02 15:04"), fmt.Sprint(r.Licenses), strings.Join(kinds, ",")})
	}
	table(e.stdout, []string{"SITE", "SEQ", "HASH", "RECEIVED", "LICENSES", "FLAGS"}, rows)
	return nil
}

// printUsageRecord shows what the vendor recorded of a usage report.
func printUsageRecord(e *env, asJSON bool, rec *clearinghouse.UsageRecord) error {
	if asJSON {
		return printJSON(e.stdout, rec)
	}
	fmt.Fprintf(e.stdout, "usage report %d of site %s (%.16s…): %d licenses, %d flags\n", rec.Sequence, rec.SiteID, rec.Hash, rec.Licenses, len(rec.Flags))
	for _, f := range rec.Flags {
		fmt.Fprintf(e.stdout, "  %s: %s\n", f.Kind, f.Message)
	}
	return nil
}
