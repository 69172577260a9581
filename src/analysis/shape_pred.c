/*
 * shape_pred.c - the equality predicates of a statement's top-level WHERE
 * (the cache's row tags) and the rows of INSERT ... VALUES and
 * UPDATE ... SET.
 *
 * Only what is certain is reported.  A conjunct whose column cannot be
 * tied to exactly one relation instance is left out; a value that is not
 * a literal, a parameter, NULL or DEFAULT is ANALYSIS_VALUE_OTHER; a cast
 * that may change a literal's value (typmods, a float or boolean cast to
 * anything) makes it OTHER too.  Every recursion is bounded by
 * ANALYSIS_MAX_DEPTH.
 */
#include "analysis/shape_build.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FROM items remembered for qualified columns; more means "unknown". */
enum { SCOPE_MAX = 64 };

/* A value read from the tree, before its text is copied to the pool. */
struct pval {
	enum analysis_value_kind kind;
	enum analysis_const_type ctype;
	int param;
	const char *text;	/* CONST: in the tree, in 'num' or static */
	size_t len;
	bool negate;		/* under an odd number of unary minus */
	char num[16];		/* an Integer's decimal text */
};

/* One item of the FROM list, the UPDATE/DELETE target, or a join alias. */
struct scope_ent {
	const PgQuery__RangeVar *rv;	/* NULL: subquery, function, join */
	const char *name;		/* what qualifies its columns */
	bool renamed;			/* t AS x(a, b): columns renamed */
};

struct scope {
	struct scope_ent ent[SCOPE_MAX];
	size_t n;
	size_t n_items;		/* leaf items (relations, subqueries ...) */
	bool unknown;		/* too many items or too deep: resolve none */
};

struct pctx {
	struct shape_build *b;
	struct analysis_stmt *st;
	struct scope scope;
};

/* ---- the text pool ------------------------------------------------------ */

static bool
pool_reserve(struct shape_build *b, size_t need)
{
	size_t cap = b->pool_cap ? b->pool_cap : 256;
	char *p;

	if (b->pool_cap - b->pool_len >= need)
		return true;
	while (cap - b->pool_len < need) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	p = realloc(b->pool, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->pool = p;
	b->pool_cap = cap;
	return true;
}

static bool
is_numeric(enum analysis_const_type t)
{
	return t == ANALYSIS_CONST_INT || t == ANALYSIS_CONST_FLOAT;
}

/*
 * Copy a constant's text as Postgres reads it: the sign applied, and an
 * integer as canonical decimal (no leading zeros, no "-0").  Returns the
 * offset of the NUL-terminated copy, or SIZE_MAX (b->oom set).
 */
static size_t
pool_add(struct shape_build *b, const struct pval *v, size_t *outlen)
{
	const char *s = v->text;
	size_t len = v->len, off;
	bool minus = false;

	if (is_numeric(v->ctype) && len > 0 && s[0] == '-') {
		minus = true;
		s++, len--;
	}
	minus ^= v->negate;
	if (v->ctype == ANALYSIS_CONST_INT) {
		while (len > 1 && s[0] == '0')
			s++, len--;
		if (len == 1 && s[0] == '0')
			minus = false;
	}
	if (!pool_reserve(b, len + 2))
		return SIZE_MAX;
	off = b->pool_len;
	if (minus)
		b->pool[b->pool_len++] = '-';
	if (len)
		memcpy(b->pool + b->pool_len, s, len);
	b->pool_len += len;
	b->pool[b->pool_len++] = '\0';
	*outlen = b->pool_len - off - 1;
	return off;
}

/* Append to b->values (and its parallel offsets); false if it did not fit. */
static bool
push_value(struct shape_build *b, const struct pval *v)
{
	struct analysis_value *val;
	size_t *off, len = 0, at = SIZE_MAX;

	if (v->kind == ANALYSIS_VALUE_CONST) {
		at = pool_add(b, v, &len);
		if (at == SIZE_MAX)
			return false;
	}
	val = shape_vec_push(b, &b->values, sizeof(*val));
	if (!val)
		return false;
	off = shape_vec_push(b, &b->value_offs, sizeof(*off));
	if (!off) {
		b->values.n--;
		return false;
	}
	*off = at;
	val->kind = v->kind;
	val->ctype = v->kind == ANALYSIS_VALUE_CONST ? v->ctype
						     : ANALYSIS_CONST_NONE;
	val->param = v->param;
	val->len = len;
	return true;
}

static bool
push_other(struct shape_build *b)
{
	struct pval v = {.kind = ANALYSIS_VALUE_OTHER};

	return push_value(b, &v);
}

static void
values_rollback(struct shape_build *b, size_t first)
{
	b->values.n = first;
	b->value_offs.n = first;
}

/* ---- reading values ----------------------------------------------------- */

/* "123", "-0042": an integer too large for the parser's int32. */
static bool
all_digits(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static bool
pval_const(const PgQuery__AConst *c, struct pval *v)
{
	if (c->isnull) {
		v->kind = ANALYSIS_VALUE_NULL;
		return true;
	}
	v->kind = ANALYSIS_VALUE_CONST;
	switch (c->val_case) {
	case PG_QUERY__A__CONST__VAL_IVAL:
		snprintf(v->num, sizeof(v->num), "%d",
			 c->ival ? c->ival->ival : 0);
		v->text = v->num, v->ctype = ANALYSIS_CONST_INT;
		break;
	case PG_QUERY__A__CONST__VAL_FVAL:
		v->text = c->fval && c->fval->fval ? c->fval->fval : "";
		v->ctype = all_digits(v->text) ? ANALYSIS_CONST_INT
					       : ANALYSIS_CONST_FLOAT;
		break;
	case PG_QUERY__A__CONST__VAL_BOOLVAL:
		v->text = c->boolval && c->boolval->boolval ? "true" : "false";
		v->ctype = ANALYSIS_CONST_BOOL;
		break;
	case PG_QUERY__A__CONST__VAL_SVAL:
		v->text = c->sval && c->sval->sval ? c->sval->sval : "";
		v->ctype = ANALYSIS_CONST_STRING;
		break;
	case PG_QUERY__A__CONST__VAL_BSVAL:
		v->text = c->bsval && c->bsval->bsval ? c->bsval->bsval : "";
		v->ctype = ANALYSIS_CONST_BITSTRING;
		break;
	default:
		return false;
	}
	v->len = strlen(v->text);
	return true;
}

/* The last name of a cast's type: "int4" for int, integer and int4. */
static const char *
cast_type(const PgQuery__TypeCast *tc)
{
	const PgQuery__TypeName *t = tc->type_name;

	if (!t || t->n_names == 0 || t->n_typmods > 0 || t->setof ||
	    t->pct_type)
		return NULL;	/* varchar(3), numeric(5,2): may change it */
	return shape_node_str(t->names[t->n_names - 1]);
}

static bool
int_type(const char *name)
{
	return strcmp(name, "int2") == 0 || strcmp(name, "int4") == 0 ||
	       strcmp(name, "int8") == 0 || strcmp(name, "numeric") == 0;
}

/* +x and -x; false for any other operator. */
static bool
unary_sign(const PgQuery__AExpr *e, struct pval *v)
{
	const char *op;

	if (e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP || e->lexpr ||
	    !e->rexpr || e->n_name != 1)
		return false;
	op = shape_node_str(e->name[0]);
	if (!op || (strcmp(op, "-") != 0 && strcmp(op, "+") != 0))
		return false;
	if (op[0] == '-')
		v->negate = !v->negate;
	return true;
}

/*
 * What a leaf reached through casts and signs is worth: a sign applies
 * to numbers only, a cast keeps a string (its input text), a parameter,
 * NULL, or an integer cast to an integer type.
 */
static bool
pval_leaf(struct pval *v, bool cast, bool cast_int)
{
	if (v->negate && !(v->kind == ANALYSIS_VALUE_CONST &&
			   is_numeric(v->ctype)))
		return false;
	if (!cast || v->kind != ANALYSIS_VALUE_CONST)
		return true;
	if (v->ctype == ANALYSIS_CONST_STRING)
		return true;
	return v->ctype == ANALYSIS_CONST_INT && cast_int;
}

/* Fill 'v' from a value node; false (v unusable) if it is an expression. */
static bool
pval_of(const PgQuery__Node *n, struct pval *v)
{
	bool cast = false, cast_int = true;
	const char *type;
	unsigned depth;

	memset(v, 0, sizeof(*v));
	for (depth = 0; n && depth < ANALYSIS_MAX_DEPTH; depth++) {
		switch (n->node_case) {
		case PG_QUERY__NODE__NODE_A_CONST:
			return n->a_const && pval_const(n->a_const, v) &&
			       pval_leaf(v, cast, cast_int);
		case PG_QUERY__NODE__NODE_PARAM_REF:
			v->kind = ANALYSIS_VALUE_PARAM;
			v->param = n->param_ref ? n->param_ref->number : 0;
			return pval_leaf(v, cast, cast_int);
		case PG_QUERY__NODE__NODE_SET_TO_DEFAULT:
			v->kind = ANALYSIS_VALUE_DEFAULT;
			return !cast && pval_leaf(v, cast, cast_int);
		case PG_QUERY__NODE__NODE_TYPE_CAST:
			if (!n->type_cast || !(type = cast_type(n->type_cast)))
				return false;
			cast = true;
			cast_int &= int_type(type);
			n = n->type_cast->arg;
			break;
		case PG_QUERY__NODE__NODE_A_EXPR:
			if (!n->a_expr || !unary_sign(n->a_expr, v))
				return false;
			n = n->a_expr->rexpr;
			break;
		default:
			return false;
		}
	}
	return false;
}

/* A value node as it is, or OTHER; false if it did not fit. */
static bool
push_node(struct shape_build *b, const PgQuery__Node *n)
{
	struct pval v;

	if (!pval_of(n, &v))
		return push_other(b);
	return push_value(b, &v);
}

/* ---- FROM list scope ---------------------------------------------------- */

static void
scope_add(struct scope *s, const PgQuery__RangeVar *rv,
	  const PgQuery__Alias *alias)
{
	struct scope_ent *e;

	if (!rv && !(alias && alias->aliasname))
		return;
	if (s->n == SCOPE_MAX) {
		s->unknown = true;
		return;
	}
	e = &s->ent[s->n++];
	e->rv = rv;
	e->name = alias && alias->aliasname ? alias->aliasname : rv->relname;
	e->renamed = alias && alias->n_colnames > 0;
}

static PgQuery__Alias *
item_alias(const PgQuery__Node *n)
{
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_RANGE_SUBSELECT:
		return n->range_subselect ? n->range_subselect->alias : NULL;
	case PG_QUERY__NODE__NODE_RANGE_FUNCTION:
		return n->range_function ? n->range_function->alias : NULL;
	case PG_QUERY__NODE__NODE_RANGE_TABLE_FUNC:
		return n->range_table_func ? n->range_table_func->alias : NULL;
	default:
		return NULL;
	}
}

/* One FROM item: a relation, a join of items, or something else. */
static void
scope_item(struct scope *s, const PgQuery__Node *n, unsigned depth)
{
	const PgQuery__JoinExpr *j;

	if (!n || depth >= ANALYSIS_MAX_DEPTH) {
		s->unknown = true;
		return;
	}
	if (n->node_case == PG_QUERY__NODE__NODE_RANGE_VAR && n->range_var &&
	    n->range_var->relname) {
		s->n_items++;
		scope_add(s, n->range_var, n->range_var->alias);
	} else if (n->node_case == PG_QUERY__NODE__NODE_RANGE_TABLE_SAMPLE &&
		   n->range_table_sample) {
		scope_item(s, n->range_table_sample->relation, depth + 1);
	} else if (n->node_case == PG_QUERY__NODE__NODE_JOIN_EXPR &&
		   n->join_expr) {
		j = n->join_expr;
		scope_item(s, j->larg, depth + 1);
		scope_item(s, j->rarg, depth + 1);
		scope_add(s, NULL, j->alias);
		scope_add(s, NULL, j->join_using_alias);
	} else {
		s->n_items++;
		scope_add(s, NULL, item_alias(n));
	}
}

static void
scope_build(struct scope *s, const PgQuery__RangeVar *target,
	    PgQuery__Node *const *items, size_t n)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	if (target && target->relname) {
		s->n_items++;
		scope_add(s, target, target->alias);
	}
	for (i = 0; i < n; i++)
		scope_item(s, items[i], 0);
}

/* The FROM entry a qualifier names (schema may be NULL); NULL if not one. */
static const struct scope_ent *
scope_find(const struct scope *s, const char *schema, const char *name)
{
	const struct scope_ent *e, *hit = NULL;
	size_t i;

	for (i = 0; i < s->n; i++) {
		e = &s->ent[i];
		if (strcmp(e->name, name) != 0)
			continue;
		if (schema && (!e->rv || e->rv->alias || !e->rv->schemaname ||
			       strcmp(e->rv->schemaname, schema) != 0))
			continue;
		if (hit)
			return NULL;	/* ambiguous: Postgres refuses it */
		hit = e;
	}
	return hit;
}

/*
 * The statement's rel a column belongs to, or SIZE_MAX.  A rel named
 * twice in the statement (self-join, subquery, CTE) is refused: the
 * predicate would hold for one of its scans only.
 */
static size_t
resolve(const struct pctx *c, const PgQuery__ColumnRef *cr, const char **col)
{
	const char *f[3];
	const struct scope_ent *e;
	const struct analysis_rel *r;
	const size_t *refs = c->b->rel_refs.p;
	size_t i;

	if (c->scope.unknown || cr->n_fields < 1 || cr->n_fields > 3)
		return SIZE_MAX;
	for (i = 0; i < cr->n_fields; i++)
		if (!(f[i] = shape_node_str(cr->fields[i])))
			return SIZE_MAX;	/* t.* */
	if (cr->n_fields == 1)
		e = c->scope.n_items == 1 && c->scope.n == 1 ? &c->scope.ent[0]
							     : NULL;
	else if (cr->n_fields == 2)
		e = scope_find(&c->scope, NULL, f[0]);
	else
		e = scope_find(&c->scope, f[0], f[1]);
	if (!e || !e->rv || e->renamed)
		return SIZE_MAX;
	i = shape_find_rel(c->b, c->st, e->rv->schemaname, e->rv->relname);
	if (i == SIZE_MAX || i >= c->b->rel_refs.n || refs[i] != 1)
		return SIZE_MAX;
	r = SHAPE_AT(c->b->rels, struct analysis_rel, i);
	if (r->maybe_cte)
		return SIZE_MAX;
	*col = f[cr->n_fields - 1];
	return i;
}

/* ---- predicates --------------------------------------------------------- */

static const PgQuery__ColumnRef *
column_of(const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
		return NULL;
	return n->column_ref;
}

/*
 * Record 'col' of 'rel' with the values pushed since 'first' ('ok': all
 * of them fitted); on any failure the values are dropped with it.
 */
static void
pred_finish(struct pctx *c, size_t rel, const char *col, size_t first,
	    bool ok)
{
	struct analysis_pred *p = NULL;

	if (ok)
		p = shape_vec_push(c->b, &c->b->preds, sizeof(*p));
	if (!p) {
		values_rollback(c->b, first);
		return;
	}
	p->rel = rel;
	shape_copy_name(c->b, p->column, col);
	p->values_first = first;
	p->n_values = c->b->values.n - first;
}

/* col = value, value = col. */
static void
term_eq(struct pctx *c, const PgQuery__AExpr *e)
{
	const PgQuery__ColumnRef *cr = column_of(e->lexpr);
	const PgQuery__Node *val = e->rexpr;
	const char *col;
	struct pval v;
	size_t rel, first = c->b->values.n;

	if (!cr) {
		cr = column_of(e->rexpr);
		val = e->lexpr;
	}
	if (!cr || !pval_of(val, &v) || v.kind == ANALYSIS_VALUE_DEFAULT)
		return;
	rel = resolve(c, cr, &col);
	if (rel != SIZE_MAX)
		pred_finish(c, rel, col, first, push_value(c->b, &v));
}

static bool
push_list(struct shape_build *b, PgQuery__Node *const *items, size_t n)
{
	size_t i;

	if (n == 0)		/* ARRAY[]: matches nothing, say nothing */
		return push_other(b);
	for (i = 0; i < n; i++)
		if (!push_node(b, items[i]))
			return false;
	return true;
}

/*
 * '{1,2,abc}': elements that need neither quotes nor escapes, pushed
 * as strings ("NULL" as NULL).  Anything else is one OTHER value.
 */
static bool
push_array_literal(struct shape_build *b, const char *s)
{
	size_t len = strlen(s), first = b->values.n, i, start;
	struct pval v = {.kind = ANALYSIS_VALUE_CONST,
			 .ctype = ANALYSIS_CONST_STRING};

	if (len < 3 || s[0] != '{' || s[len - 1] != '}' ||
	    strcspn(s + 1, "{}\"\\ \t\r\n\f\v") != len - 2)
		return push_other(b);
	for (start = i = 1; i < len; i++) {
		if (s[i] != ',' && s[i] != '}')
			continue;
		if (i == start) {	/* '{1,,2}' is an error in Postgres */
			values_rollback(b, first);
			return push_other(b);
		}
		v.kind = ANALYSIS_VALUE_CONST;
		if (i - start == 4 && strncasecmp(s + start, "null", 4) == 0)
			v.kind = ANALYSIS_VALUE_NULL;
		v.text = s + start, v.len = i - start;
		if (!push_value(b, &v))
			return false;
		start = i + 1;
	}
	return true;
}

/* The array of col = ANY(array), through casts without typmods. */
static bool
push_any(struct shape_build *b, const PgQuery__Node *n)
{
	unsigned depth;

	for (depth = 0; n && depth < ANALYSIS_MAX_DEPTH; depth++) {
		switch (n->node_case) {
		case PG_QUERY__NODE__NODE_TYPE_CAST:
			if (!n->type_cast || !cast_type(n->type_cast))
				return push_other(b);
			n = n->type_cast->arg;
			break;
		case PG_QUERY__NODE__NODE_PARAM_REF: {
			struct pval v = {.kind = ANALYSIS_VALUE_PARAM_ARRAY};

			v.param = n->param_ref ? n->param_ref->number : 0;
			return push_value(b, &v);
		}
		case PG_QUERY__NODE__NODE_A_ARRAY_EXPR:
			if (!n->a_array_expr)
				return push_other(b);
			return push_list(b, n->a_array_expr->elements,
					 n->a_array_expr->n_elements);
		case PG_QUERY__NODE__NODE_A_CONST:
			if (!n->a_const || n->a_const->isnull ||
			    n->a_const->val_case !=
				    PG_QUERY__A__CONST__VAL_SVAL ||
			    !n->a_const->sval || !n->a_const->sval->sval)
				return push_other(b);
			return push_array_literal(b, n->a_const->sval->sval);
		default:
			return push_other(b);
		}
	}
	return push_other(b);
}

/* col IN (list) and col = ANY(array). */
static void
term_set(struct pctx *c, const PgQuery__AExpr *e)
{
	const PgQuery__ColumnRef *cr = column_of(e->lexpr);
	const PgQuery__List *l;
	const char *col;
	size_t rel, first = c->b->values.n;
	bool ok;

	if (!cr || (rel = resolve(c, cr, &col)) == SIZE_MAX)
		return;
	if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY) {
		ok = push_any(c->b, e->rexpr);
	} else {
		if (e->rexpr->node_case != PG_QUERY__NODE__NODE_LIST ||
		    !(l = e->rexpr->list))
			return;
		ok = push_list(c->b, l->items, l->n_items);
	}
	pred_finish(c, rel, col, first, ok);
}

/* The operator is '=' (or OPERATOR(pg_catalog.=)). */
static bool
is_eq(const PgQuery__AExpr *e)
{
	const char *op, *schema;

	if (e->n_name == 0 || e->n_name > 2 || !e->lexpr || !e->rexpr)
		return false;
	op = shape_node_str(e->name[e->n_name - 1]);
	if (!op || strcmp(op, "=") != 0)
		return false;
	if (e->n_name == 1)
		return true;
	schema = shape_node_str(e->name[0]);
	return schema && strcmp(schema, "pg_catalog") == 0;
}

static void
term(struct pctx *c, const PgQuery__Node *n)
{
	const PgQuery__AExpr *e;

	if (n->node_case != PG_QUERY__NODE__NODE_A_EXPR || !n->a_expr)
		return;
	e = n->a_expr;
	if (!is_eq(e))
		return;
	if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP)
		term_eq(c, e);
	else if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_IN ||
		 e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY)
		term_set(c, e);
}

/* Walk the AND tree; anything under OR or NOT says nothing certain. */
static void
conjuncts(struct pctx *c, const PgQuery__Node *n, unsigned depth)
{
	const PgQuery__BoolExpr *be;
	size_t i;

	if (!n || c->b->oom)
		return;
	if (depth >= ANALYSIS_MAX_DEPTH) {
		c->b->overflow = true;
		return;
	}
	if (n->node_case != PG_QUERY__NODE__NODE_BOOL_EXPR) {
		term(c, n);
		return;
	}
	be = n->bool_expr;
	if (!be || be->boolop != PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR)
		return;
	for (i = 0; i < be->n_args; i++)
		conjuncts(c, be->args[i], depth + 1);
}

static void
where_preds(struct shape_build *b, struct analysis_stmt *st,
	    const PgQuery__Node *where, const PgQuery__RangeVar *target,
	    PgQuery__Node *const *from, size_t n_from)
{
	struct pctx c = {.b = b, .st = st};

	if (!where)
		return;
	scope_build(&c.scope, target, from, n_from);
	conjuncts(&c, where, 0);
}

/* ---- rows --------------------------------------------------------------- */

static const PgQuery__ResTarget *
res_target(const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_RES_TARGET)
		return NULL;
	return n->res_target;
}

/* Column names of INSERT (a, b) / UPDATE SET a = ..; false if one failed. */
static bool
push_cols(struct shape_build *b, PgQuery__Node *const *targets, size_t n)
{
	const PgQuery__ResTarget *rt;
	struct analysis_col *col;
	size_t i;

	for (i = 0; i < n; i++) {
		rt = res_target(targets[i]);
		col = shape_vec_push(b, &b->cols, sizeof(*col));
		if (!col)
			return false;
		shape_copy_name(b, col->name, rt && rt->name ? rt->name : "");
	}
	return true;
}

/*
 * Value i of a row: OTHER where the target has a subscript or field
 * (SET a[1] = .., INSERT INTO t (c.f)), as the value is not the column's.
 */
static bool
push_target_value(struct shape_build *b, PgQuery__Node *const *targets,
		  size_t n_targets, size_t i, const PgQuery__Node *val)
{
	const PgQuery__ResTarget *rt;

	if (i < n_targets) {
		rt = res_target(targets[i]);
		if (!rt || rt->n_indirection > 0)
			return push_other(b);
	}
	return push_node(b, val);
}

static const PgQuery__List *
values_row(const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_LIST)
		return NULL;
	return n->list;
}

/* The VALUES lists of an INSERT, if they are plain rows of equal width. */
static const PgQuery__SelectStmt *
plain_values(const PgQuery__InsertStmt *ins)
{
	const PgQuery__SelectStmt *s;
	const PgQuery__List *row;
	size_t i, width;

	if (!ins->select_stmt ||
	    ins->select_stmt->node_case != PG_QUERY__NODE__NODE_SELECT_STMT)
		return NULL;
	s = ins->select_stmt->select_stmt;
	if (!s || s->n_values_lists == 0 ||
	    s->op != PG_QUERY__SET_OPERATION__SETOP_NONE || s->limit_count ||
	    s->limit_offset || s->n_sort_clause > 0)
		return NULL;
	if (!(row = values_row(s->values_lists[0])))
		return NULL;
	width = row->n_items;
	if (width == 0 || (ins->n_cols > 0 && ins->n_cols != width))
		return NULL;	/* Postgres rejects these */
	for (i = 1; i < s->n_values_lists; i++) {
		row = values_row(s->values_lists[i]);
		if (!row || row->n_items != width)
			return NULL;
	}
	return s;
}

static void
insert_rows(struct shape_build *b, struct analysis_stmt *st,
	    const PgQuery__InsertStmt *ins)
{
	const PgQuery__SelectStmt *s;
	const PgQuery__List *row;
	size_t r, i;

	if (!push_cols(b, ins->cols, ins->n_cols))
		return;
	s = plain_values(ins);
	if (!s)
		return;
	st->rows_first = b->values.n;
	st->row_width = values_row(s->values_lists[0])->n_items;
	for (r = 0; r < s->n_values_lists; r++) {
		row = values_row(s->values_lists[r]);
		for (i = 0; i < row->n_items; i++)
			if (!push_target_value(b, ins->cols, ins->n_cols, i,
					       row->items[i]))
				return;
		st->n_rows++;
	}
	st->rows_known = true;
}

/* SET (a, b) = (1, 2) puts element colno of the row in each target. */
static const PgQuery__Node *
set_source(const PgQuery__ResTarget *rt)
{
	const PgQuery__MultiAssignRef *m;
	const PgQuery__RowExpr *row;

	if (!rt->val ||
	    rt->val->node_case != PG_QUERY__NODE__NODE_MULTI_ASSIGN_REF)
		return rt->val;
	m = rt->val->multi_assign_ref;
	if (!m || !m->source ||
	    m->source->node_case != PG_QUERY__NODE__NODE_ROW_EXPR)
		return NULL;	/* = (SELECT ...) */
	row = m->source->row_expr;
	if (!row || m->colno < 1 || (size_t)m->colno > row->n_args)
		return NULL;
	return row->args[m->colno - 1];
}

static void
update_row(struct shape_build *b, struct analysis_stmt *st,
	   const PgQuery__UpdateStmt *up)
{
	const PgQuery__ResTarget *rt;
	const PgQuery__Node *val;
	size_t i;

	if (up->n_target_list == 0 ||
	    !push_cols(b, up->target_list, up->n_target_list))
		return;
	st->rows_first = b->values.n;
	st->row_width = up->n_target_list;
	for (i = 0; i < up->n_target_list; i++) {
		rt = res_target(up->target_list[i]);
		val = rt ? set_source(rt) : NULL;
		if (!push_target_value(b, up->target_list, up->n_target_list,
				       i, val))
			return;
	}
	st->n_rows = 1;
	st->rows_known = true;
}

static enum analysis_on_conflict
on_conflict(const PgQuery__OnConflictClause *oc)
{
	if (!oc)
		return ANALYSIS_CONFLICT_NONE;
	if (oc->action == PG_QUERY__ON_CONFLICT_ACTION__ONCONFLICT_NOTHING)
		return ANALYSIS_CONFLICT_NOTHING;
	if (oc->action == PG_QUERY__ON_CONFLICT_ACTION__ONCONFLICT_UPDATE)
		return ANALYSIS_CONFLICT_UPDATE;
	return ANALYSIS_CONFLICT_NONE;
}

void
shape_preds(struct shape_build *b, struct analysis_stmt *st,
	    const PgQuery__Node *top)
{
	const PgQuery__SelectStmt *s;
	const PgQuery__UpdateStmt *up;
	const PgQuery__DeleteStmt *del;
	const PgQuery__InsertStmt *ins;

	if (top->node_case == PG_QUERY__NODE__NODE_SELECT_STMT &&
	    (s = top->select_stmt)) {
		if (s->op == PG_QUERY__SET_OPERATION__SETOP_NONE)
			where_preds(b, st, s->where_clause, NULL,
				    s->from_clause, s->n_from_clause);
	} else if (top->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT &&
		   (up = top->update_stmt)) {
		where_preds(b, st, up->where_clause, up->relation,
			    up->from_clause, up->n_from_clause);
		update_row(b, st, up);
		st->has_returning = up->n_returning_list > 0;
	} else if (top->node_case == PG_QUERY__NODE__NODE_DELETE_STMT &&
		   (del = top->delete_stmt)) {
		where_preds(b, st, del->where_clause, del->relation,
			    del->using_clause, del->n_using_clause);
		st->has_returning = del->n_returning_list > 0;
	} else if (top->node_case == PG_QUERY__NODE__NODE_INSERT_STMT &&
		   (ins = top->insert_stmt)) {
		insert_rows(b, st, ins);
		st->on_conflict = on_conflict(ins->on_conflict_clause);
		st->has_returning = ins->n_returning_list > 0;
	}
}
