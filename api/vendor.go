package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/licenseserver"
)

// EnrollRequest is the body of POST /v1/sites/enroll.
type EnrollRequest struct {
	Code    string `json:"code"`    // the one-time enrollment code
	Request string `json:"request"` // the armored certification request
}

// CertifyRequest is the body of POST /v1/sites/certify (admin, offline path).
type CertifyRequest struct {
	CustomerID string `json:"customer_id"`
	Request    string `json:"request"` // the armored certification request
}

// CertificateResponse carries an armored site certificate file.
type CertificateResponse struct {
	Certificate string `json:"certificate"`
}

// EnrollmentResponse is the answer to creating an enrollment code.
type EnrollmentResponse struct {
	Code string `json:"code"`
	clearinghouse.Enrollment
}

// PackResponse is the answer to a purchase request.
type PackResponse struct {
	clearinghouse.IssuedPack
	Pack string `json:"pack"` // the armored, encrypted pack file
}

// ImageSignatureResponse carries an armored client image signature file.
type ImageSignatureResponse struct {
	Signature string `json:"signature"`
}

// ContentTypeArmor is the media type of licet's armored files.
const ContentTypeArmor = "text/plain; charset=utf-8"

func decodeRequest(text string) ([]byte, error) {
	blk, err := armor.Decode([]byte(text), armor.TypeCertRequest)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "certification request rejected")
	}
	if blk.Version > 1 {
		return nil, errs.E(errs.Invalid, "certification request format version %d is newer than this licet reads (1); upgrade licet", blk.Version)
	}
	return blk.Body, nil
}

// NewVendorHandler returns the vendor's HTTP API over svc.
func NewVendorHandler(svc *clearinghouse.Service, log *slog.Logger, limits Limits) *Server {
	s := NewServer("vendor", log, limits, svc.Store)
	s.Public("GET /v1/root", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, err := w.Write(svc.RootPEM())
		return err
	})
	s.Admin("POST /v1/products", func(w http.ResponseWriter, r *http.Request) error {
		var p clearinghouse.Product
		if err := readJSON(r, &p); err != nil {
			return err
		}
		if err := svc.AddProduct(r.Context(), &p); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, p)
		return nil
	})
	s.Admin("POST /v1/products/{id}/releases", func(w http.ResponseWriter, r *http.Request) error {
		var req ReleaseRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		p, err := svc.ReleaseVersion(r.Context(), r.PathValue("id"), req.Version)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, p)
		return nil
	})
	s.Admin("GET /v1/products", func(w http.ResponseWriter, r *http.Request) error {
		ps, err := svc.Store.Products(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ps)
		return nil
	})
	s.Admin("POST /v1/customers", func(w http.ResponseWriter, r *http.Request) error {
		var c clearinghouse.Customer
		if err := readJSON(r, &c); err != nil {
			return err
		}
		if err := svc.AddCustomer(r.Context(), &c); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, c)
		return nil
	})
	s.Admin("GET /v1/customers", func(w http.ResponseWriter, r *http.Request) error {
		cs, err := svc.Store.Customers(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, cs)
		return nil
	})
	s.Admin("POST /v1/customers/{id}/enrollments", func(w http.ResponseWriter, r *http.Request) error {
		code, e, err := svc.CreateEnrollment(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, EnrollmentResponse{Code: code, Enrollment: *e})
		return nil
	})
	s.Public("POST /v1/sites/enroll", func(w http.ResponseWriter, r *http.Request) error {
		var req EnrollRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		csr, err := decodeRequest(req.Request)
		if err != nil {
			return err
		}
		chain, err := svc.EnrollSite(r.Context(), req.Code, csr)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, CertificateResponse{Certificate: string(licenseserver.EncodeCertificate(chain))})
		return nil
	})
	s.Admin("POST /v1/sites/certify", func(w http.ResponseWriter, r *http.Request) error {
		var req CertifyRequest
		if err := readJSON(r, &req); err != nil {
			return err
		}
		csr, err := decodeRequest(req.Request)
		if err != nil {
			return err
		}
		chain, err := svc.CertifySite(r.Context(), req.CustomerID, csr)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, CertificateResponse{Certificate: string(licenseserver.EncodeCertificate(chain))})
		return nil
	})
	s.Admin("POST /v1/orders", func(w http.ResponseWriter, r *http.Request) error {
		var o clearinghouse.Order
		if err := readJSON(r, &o); err != nil {
			return err
		}
		if err := svc.AddOrder(r.Context(), &o); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, o)
		return nil
	})
	s.Admin("GET /v1/orders", func(w http.ResponseWriter, r *http.Request) error {
		orders, err := svc.Store.Orders(r.Context(), r.URL.Query().Get("customer"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, orders)
		return nil
	})
	s.Admin("GET /v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) error {
		o, err := svc.Store.Order(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, o)
		return nil
	})
	s.Admin("POST /v1/images", func(w http.ResponseWriter, r *http.Request) error {
		var m clientimage.Manifest
		if err := readJSON(r, &m); err != nil {
			return err
		}
		m.Signed = svc.Now().UTC().Truncate(time.Second)
		file, err := clientimage.Sign(&m, svc.Clearinghouse, svc.ClearinghouseChain)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, ImageSignatureResponse{Signature: string(file)})
		return nil
	})
	// A purchase request is authenticated by the signature of the site's
	// certified key that it carries, so this route needs no admin token.
	s.Public("POST /v1/packs", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		file, rec, err := svc.IssuePack(r.Context(), body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, PackResponse{IssuedPack: *rec, Pack: string(file)})
		return nil
	})
	usageRoutes(s, svc)
	siteRoutes(s, svc)
	return s
}
