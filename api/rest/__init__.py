"""The REST contract of DESIGN §3 in one place: base schemas, pages, ETag/If-Match, query
strings and 405s. Resource modules declare routes; these modules give them the rules."""
