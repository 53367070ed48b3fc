package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
)

// tokenTable stores admin tokens in a role's token table.
type tokenTable struct {
	db    *DB
	table string
}

// AddToken stores a new admin token.
func (t tokenTable) AddToken(ctx context.Context, tok *auth.Token) error {
	scope := tok.Scope
	if scope == "" {
		scope = auth.ScopeAdmin
	}
	_, err := t.db.conn().exec(ctx, `INSERT INTO `+t.table+` (id, name, hash, created, scope) VALUES (?, ?, ?, ?, ?)`,
		tok.ID, tok.Name, tok.Hash, toNanos(tok.Created), scope)
	if t.db.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "admin token %s (or its hash) exists already; make a new token", tok.ID)
	}
	return t.db.dbErr(err, "store admin token")
}

// TokenByHash finds an admin token by the SHA-256 of its secret.
func (t tokenTable) TokenByHash(ctx context.Context, hash []byte) (*auth.Token, error) {
	var tok auth.Token
	var created int64
	err := t.db.conn().row(ctx, `SELECT id, name, hash, created, scope FROM `+t.table+` WHERE hash = ?`, hash).
		Scan(&tok.ID, &tok.Name, &tok.Hash, &created, &tok.Scope)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errs.E(errs.NotFound, "admin token not found")
		}
		return nil, t.db.dbErr(err, "read admin token")
	}
	tok.Created = fromNanos(created)
	return &tok, nil
}
