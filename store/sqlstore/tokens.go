package sqlstore

import (
	"context"

	"github.com/licet/licet/auth"
)

// tokenTable stores admin tokens in a role's token table.
type tokenTable struct {
	db    *DB
	table string
}

// AddToken stores a new admin token.
func (t tokenTable) AddToken(ctx context.Context, tok *auth.Token) error {
	_, err := t.db.conn().exec(ctx, `INSERT INTO `+t.table+` (id, name, hash, created) VALUES (?, ?, ?, ?)`,
		tok.ID, tok.Name, tok.Hash, toNanos(tok.Created))
	return t.db.dbErr(err, "store admin token")
}

// TokenByHash finds an admin token by the SHA-256 of its secret.
func (t tokenTable) TokenByHash(ctx context.Context, hash []byte) (*auth.Token, error) {
	var tok auth.Token
	var created int64
	err := t.db.conn().row(ctx, `SELECT id, name, hash, created FROM `+t.table+` WHERE hash = ?`, hash).
		Scan(&tok.ID, &tok.Name, &tok.Hash, &created)
	if err != nil {
		return nil, t.db.scanErr(err, "admin token", "(hidden)")
	}
	tok.Created = fromNanos(created)
	return &tok, nil
}
