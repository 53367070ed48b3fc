package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/provisioning"
)

// readBatch reads the sales of a batch file: CSV (account,plan,device; an
// optional header line naming those columns; '#' starts a comment) or JSON
// lines ({"account":…,"plan":…,"device":…} a line), told apart by the
// first character. It returns the sales and the line each came from.
func readBatch(path string, data []byte) (provisioning.BatchRequest, []int, error) {
	var req provisioning.BatchRequest
	var lines []int
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		for n, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			var it provisioning.BatchItem
			if err := dec.Decode(&it); err != nil {
				return req, nil, errs.Wrap(errs.Usage, err, "line %d of %s is not a JSON object of account, plan and device", n+1, path)
			}
			req.Sales, lines = append(req.Sales, it), append(lines, n+1)
		}
	} else {
		r := csv.NewReader(bytes.NewReader(data))
		r.Comment, r.FieldsPerRecord, r.TrimLeadingSpace = '#', 3, true
		for first := true; ; first = false {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return req, nil, errs.Wrap(errs.Usage, err, "%s is not CSV of account,plan,device", path)
			}
			line, _ := r.FieldPos(0)
			if first && strings.EqualFold(rec[0], "account") && strings.EqualFold(rec[1], "plan") && strings.EqualFold(rec[2], "device") {
				continue // the header
			}
			req.Sales = append(req.Sales, provisioning.BatchItem{Account: rec[0], Plan: rec[1], Device: rec[2]})
			lines = append(lines, line)
		}
	}
	if len(req.Sales) == 0 {
		return req, nil, errs.E(errs.Usage, "%s lists no sales: write one line per sale, account,plan,device (CSV) or {\"account\":…,\"plan\":…,\"device\":…} (JSON lines)", path)
	}
	return req, lines, nil
}

// saleIndex finds the "sales[N]" a batch error names.
var saleIndex = regexp.MustCompile(`sales\[(\d+)\]`)

// vendorSellBatch is 'licet vendor sell --batch FILE': the file's sales
// in one request, stored in one transaction or not at all.
func vendorSellBatch(ctx context.Context, e *env, c *api.Client, path, idemKey string, asJSON bool) error {
	data, err := readInput(path)
	if err != nil {
		return err
	}
	req, lines, err := readBatch(path, data)
	if err != nil {
		return err
	}
	ans, err := c.SellBatch(ctx, req, idemKey)
	if err != nil {
		if m := saleIndex.FindStringSubmatch(err.Error()); m != nil {
			if i, _ := strconv.Atoi(m[1]); i < len(lines) {
				return errs.Wrap(errs.KindOf(err), err, "line %d of %s (nothing of the batch was sold; fix the line and run again)", lines[i], path)
			}
		}
		return err
	}
	if asJSON {
		return printJSON(e.stdout, ans)
	}
	devices := map[string]bool{}
	for _, s := range ans.Sales {
		devices[s.Device] = true
	}
	fmt.Fprintf(e.stdout, "Sold %d plans to %d devices in one transaction; each device receives its packet at its next sync\n", len(ans.Sales), len(devices))
	fmt.Fprintf(e.stdout, "('licet vendor device packet export --device D' writes one to a file). Sales %s … %s.\n", ans.Sales[0].Sale, ans.Sales[len(ans.Sales)-1].Sale)
	return nil
}
