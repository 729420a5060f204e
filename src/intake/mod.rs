//! The web intake (DESIGN §6): the report form, the API, receipts and the maintainers' fetch routes.
