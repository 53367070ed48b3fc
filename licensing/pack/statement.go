package pack

import (
	"slices"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/verify"
)

// DefaultTemporaryDays is the longest validity of a temporary license a pack
// allows when its order states none.
const DefaultTemporaryDays = 60

// MaxTemporaryDays is the longest validity an order may give its pack's
// temporary licenses: a year, the term of a renewal.
const MaxTemporaryDays = 365

// DefaultUpgradeTerm is how long the pack of an upgrade (or renewal) order
// without an expiry date, and every license from it, lasts: the
// clearinghouse states it as the pack's expiry.
const DefaultUpgradeTerm = 365 * 24 * time.Hour

// DefaultTemporaryCount is how many temporary licenses a seat pack of
// quantity seats allows when its order states none: a tenth of its seats, at
// least one.
func DefaultTemporaryCount(quantity int) int { return max(1, quantity/10) }

// Statement returns the pack statement of p (docs/formats.md, section
// 9.4.1): what the clearinghouse sold, which every license of the pack
// carries. temp is the temporary-license allowance (nil: none).
func Statement(p *Pack, temp *verify.TemporaryAllowance) *verify.Statement {
	st := &verify.Statement{
		PackID: p.PackID, OrderID: p.OrderID, SiteID: p.SiteID, CustomerID: p.CustomerID, Issued: p.Issued,
		FirstActive: p.FirstActive, Expires: p.Expires, ProductID: p.Product.ID, ProductVersion: p.Product.Version,
		Platform: p.Platform, Features: p.Features, BeginSerial: p.BeginSerial, Quantity: int64(p.Quantity), Temporary: temp,
	}
	if st.Features == nil {
		st.Features = []string{}
	}
	if p.Upgrade != nil {
		st.Upgrade = &verify.StatementUpgrade{FromMin: p.Upgrade.FromMin, FromMax: p.Upgrade.FromMax}
	}
	return st
}

// SignStatement signs the statement of p with the clearinghouse key (chain:
// its certificate) and sets p.Statement to the Signed envelope's JSON.
func SignStatement(p *Pack, temp *verify.TemporaryAllowance, clearinghouse *keys.Signer, chain [][]byte) error {
	st, err := SignStatementDoc(Statement(p, temp), clearinghouse, chain)
	if err != nil {
		return err
	}
	p.Statement = st
	return nil
}

// SignStatementDoc signs a pack statement with the clearinghouse key (chain:
// its certificate), giving the JSON of its Signed envelope: what a pack
// carries in its statement member and a license in its pack statement
// extension.
func SignStatementDoc(st *verify.Statement, clearinghouse *keys.Signer, chain [][]byte) ([]byte, error) {
	s, err := envelope.Sign(verify.StatementType, verify.StatementVersion, st, clearinghouse, chain)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "sign the statement of pack %s", st.PackID)
	}
	return s.Marshal(), nil
}

// ReadStatement decodes the statement inside a pack that Open checked (the
// pack's signature covers it) and checks that it states what the pack
// states. A pack without a statement gives nil: its licenses carry none, and
// verifiers refuse them unless told to accept unbound licenses.
func ReadStatement(p *Pack) (*verify.Statement, error) {
	if len(p.Statement) == 0 {
		return nil, nil
	}
	s, err := envelope.ParseSigned(p.Statement, verify.StatementType, verify.StatementVersion)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "license pack %s: its statement", p.PackID)
	}
	var st verify.Statement
	if err := s.Decode(&st); err != nil {
		return nil, err
	}
	want := Statement(p, st.Temporary)
	if st.PackID != want.PackID || st.SiteID != want.SiteID || st.ProductID != want.ProductID || st.ProductVersion != want.ProductVersion ||
		st.Platform != want.Platform || st.BeginSerial != want.BeginSerial || st.Quantity != want.Quantity ||
		!slices.Equal(nonNil(st.Features), want.Features) || !sameTime(st.Expires, want.Expires) || (st.Upgrade == nil) != (want.Upgrade == nil) {
		return nil, errs.E(errs.Invalid, "license pack %s carries the statement of another pack (%s); ask the vendor for the original file", p.PackID, st.PackID)
	}
	if t := st.Temporary; t != nil && (t.Count < 0 || t.MaxDays < 0 || (t.Count > 0 && t.BeginSerial < 1)) {
		return nil, errs.E(errs.Invalid, "license pack %s: its statement allows %d temporary licenses of %d days from serial %d, which is not a valid allowance", p.PackID, t.Count, t.MaxDays, t.BeginSerial)
	}
	return &st, nil
}

// nonNil gives an empty list for nil.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sameTime reports whether two optional times are both absent or equal.
func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}
