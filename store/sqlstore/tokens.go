package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
)

// tokenTable stores admin tokens in a role's token table.
type tokenTable struct {
	db    *DB
	table string
}

// tokenCols are the columns scanToken reads, in its order.
const tokenCols = `id, name, hash, created, scope, product, expires, revoked`

// AddToken stores a new admin token.
func (t tokenTable) AddToken(ctx context.Context, tok *auth.Token) error {
	scope := tok.Scope
	if scope == "" {
		scope = auth.ScopeAdmin
	}
	_, err := t.db.conn().exec(ctx, `INSERT INTO `+t.table+` (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		tok.ID, tok.Name, tok.Hash, toNanos(tok.Created), scope, tok.Product, toNullNanos(tok.Expires), toNullNanos(tok.Revoked))
	if t.db.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "admin token %s (or its hash) exists already; make a new token", tok.ID)
	}
	return t.db.dbErr(err, "store admin token")
}

// scanToken reads one row of tokenCols.
func scanToken(scan func(...any) error) (*auth.Token, error) {
	var tok auth.Token
	var created int64
	var expires, revoked sql.NullInt64
	if err := scan(&tok.ID, &tok.Name, &tok.Hash, &created, &tok.Scope, &tok.Product, &expires, &revoked); err != nil {
		return nil, err
	}
	tok.Created, tok.Expires, tok.Revoked = fromNanos(created), fromNullNanos(expires), fromNullNanos(revoked)
	return &tok, nil
}

// TokenByHash finds an admin token by the SHA-256 of its secret.
func (t tokenTable) TokenByHash(ctx context.Context, hash []byte) (*auth.Token, error) {
	tok, err := scanToken(t.db.conn().row(ctx, `SELECT `+tokenCols+` FROM `+t.table+` WHERE hash = ?`, hash).Scan)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errs.E(errs.NotFound, "admin token not found")
		}
		return nil, t.db.dbErr(err, "read admin token")
	}
	return tok, nil
}

// Tokens lists every token, oldest first.
func (t tokenTable) Tokens(ctx context.Context) ([]*auth.Token, error) {
	rows, err := t.db.conn().query(ctx, `SELECT `+tokenCols+` FROM `+t.table+` ORDER BY created, id`)
	if err != nil {
		return nil, t.db.dbErr(err, "list tokens")
	}
	defer rows.Close()
	var out []*auth.Token
	for rows.Next() {
		tok, err := scanToken(rows.Scan)
		if err != nil {
			return nil, t.db.dbErr(err, "read token")
		}
		out = append(out, tok)
	}
	return out, t.db.dbErr(rows.Err(), "list tokens")
}

// RevokeToken marks a token revoked at time at (keeping an earlier
// revocation) and returns it.
func (t tokenTable) RevokeToken(ctx context.Context, id string, at time.Time) (*auth.Token, error) {
	_, err := t.db.conn().exec(ctx, `UPDATE `+t.table+` SET revoked = ? WHERE id = ? AND revoked IS NULL`, toNanos(at), id)
	if err != nil {
		return nil, t.db.dbErr(err, "revoke token")
	}
	tok, err := scanToken(t.db.conn().row(ctx, `SELECT `+tokenCols+` FROM `+t.table+` WHERE id = ?`, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "token %q not found; list the tokens to see their IDs", id)
	}
	if err != nil {
		return nil, t.db.dbErr(err, "read token")
	}
	return tok, nil
}
