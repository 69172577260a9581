/*
 * indexcols.c - index candidate columns of a SELECT (see indexcols.h),
 * over libpg_query's protobuf parse tree.
 */
#include "analysis/indexcols.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

/* How deep a value expression is followed (casts, arithmetic, calls). */
enum { VALUE_DEPTH = 8 };

static void
copy_name(char *dst, const char *src)
{
	snprintf(dst, ANALYSIS_NAME_MAX, "%s", src ? src : "");
}

static const char *
node_str(const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_STRING || !n->string)
		return NULL;
	return n->string->sval;
}

static void
add_rel(struct idxcols *out, const PgQuery__RangeVar *rv)
{
	struct idxcols_rel *r;

	if (out->n_rels == IDXCOLS_MAX_RELS || !rv->relname)
		return;
	r = &out->rels[out->n_rels++];
	copy_name(r->schema, rv->schemaname);
	copy_name(r->name, rv->relname);
	copy_name(r->alias, rv->alias && rv->alias->aliasname &&
				    rv->alias->aliasname[0] ?
			    rv->alias->aliasname : rv->relname);
}

/* The rel a column reference names, -1 if unqualified among several,
 * -2 if it names none of ours (a subquery's alias, t.*, ...). */
static int
resolve(const struct idxcols *out, const PgQuery__ColumnRef *cr,
	const char **col)
{
	const char *f[3];
	size_t i;
	int r, hit = -2;

	if (cr->n_fields < 1 || cr->n_fields > 3)
		return -2;
	for (i = 0; i < cr->n_fields; i++)
		if (!(f[i] = node_str(cr->fields[i])))
			return -2;
	*col = f[cr->n_fields - 1];
	if (cr->n_fields == 1)
		return out->n_rels == 1 ? 0 : -1;
	for (r = 0; r < out->n_rels; r++) {
		const struct idxcols_rel *rel = &out->rels[r];

		if (cr->n_fields == 2 ? strcmp(rel->alias, f[0]) != 0 :
		    (strcmp(rel->schema, f[0]) != 0 ||
		     strcmp(rel->name, f[1]) != 0 ||
		     strcmp(rel->alias, rel->name) != 0))
			continue;
		if (hit != -2)
			return -2;	/* ambiguous: Postgres refuses it */
		hit = r;
	}
	return hit;
}

static void
add_col(struct idxcols *out, const PgQuery__ColumnRef *cr,
	enum idxcols_role role)
{
	const char *name = NULL;
	int rel = resolve(out, cr, &name), i;
	struct idxcols_col *c;

	if (rel == -2 || !name || strlen(name) >= ANALYSIS_NAME_MAX)
		return;
	for (i = 0; i < out->n_cols; i++) {
		c = &out->cols[i];
		if (c->rel == rel && c->role == role &&
		    strcmp(c->name, name) == 0)
			return;
	}
	if (out->n_cols == IDXCOLS_MAX_COLS)
		return;
	c = &out->cols[out->n_cols++];
	c->rel = rel;
	c->role = role;
	copy_name(c->name, name);
}

static const PgQuery__ColumnRef *
column_of(const PgQuery__Node *n)
{
	if (n && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST &&
	    n->type_cast)
		n = n->type_cast->arg;
	if (!n || n->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
		return NULL;
	return n->column_ref;
}

/* A value fixed for the scan: constants, $n, and casts, arithmetic and
 * function calls over those (no column of any row). */
static bool
is_value(const PgQuery__Node *n, int depth)
{
	size_t i;

	if (!n || depth > VALUE_DEPTH)
		return false;
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_A_CONST:
	case PG_QUERY__NODE__NODE_PARAM_REF:
		return true;
	case PG_QUERY__NODE__NODE_TYPE_CAST:
		return n->type_cast && is_value(n->type_cast->arg, depth + 1);
	case PG_QUERY__NODE__NODE_A_EXPR:
		return n->a_expr &&
		       n->a_expr->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP &&
		       (!n->a_expr->lexpr ||
			is_value(n->a_expr->lexpr, depth + 1)) &&
		       is_value(n->a_expr->rexpr, depth + 1);
	case PG_QUERY__NODE__NODE_FUNC_CALL:
		if (!n->func_call || n->func_call->over ||
		    n->func_call->agg_star)
			return false;
		for (i = 0; i < n->func_call->n_args; i++)
			if (!is_value(n->func_call->args[i], depth + 1))
				return false;
		return true;
	default:
		return false;
	}
}

static const char *
op_name(const PgQuery__AExpr *e)
{
	return e->n_name == 1 ? node_str(e->name[0]) : NULL;
}

/* col op value / value op col / col = col. */
static void
walk_op(struct idxcols *out, const PgQuery__AExpr *e)
{
	const PgQuery__ColumnRef *l = column_of(e->lexpr);
	const PgQuery__ColumnRef *r = column_of(e->rexpr);
	const char *op = op_name(e);
	bool eq, range;

	if (!op)
		return;
	eq = strcmp(op, "=") == 0;
	range = strcmp(op, "<") == 0 || strcmp(op, "<=") == 0 ||
		strcmp(op, ">") == 0 || strcmp(op, ">=") == 0;
	if (!eq && !range)
		return;
	if (l && r) {
		const char *ln = NULL, *rn = NULL;

		/* two columns of one row: no index finds it */
		if (eq && resolve(out, l, &ln) != resolve(out, r, &rn)) {
			add_col(out, l, IDXCOLS_JOIN);
			add_col(out, r, IDXCOLS_JOIN);
		}
		return;
	}
	if (l && is_value(e->rexpr, 0))
		add_col(out, l, eq ? IDXCOLS_EQ : IDXCOLS_RANGE);
	else if (r && is_value(e->lexpr, 0))
		add_col(out, r, eq ? IDXCOLS_EQ : IDXCOLS_RANGE);
}

static void
walk_aexpr(struct idxcols *out, const PgQuery__AExpr *e)
{
	const PgQuery__ColumnRef *l = column_of(e->lexpr);
	const char *op = op_name(e);

	switch (e->kind) {
	case PG_QUERY__A__EXPR__KIND__AEXPR_OP:
		walk_op(out, e);
		break;
	case PG_QUERY__A__EXPR__KIND__AEXPR_IN:	/* col IN (...) */
		if (l && op && strcmp(op, "=") == 0)
			add_col(out, l, IDXCOLS_EQ);
		break;
	case PG_QUERY__A__EXPR__KIND__AEXPR_BETWEEN:
		if (l)
			add_col(out, l, IDXCOLS_RANGE);
		break;
	default:
		break;
	}
}

/* The conjuncts of a WHERE or ON clause. */
static void
walk_quals(struct idxcols *out, const PgQuery__Node *n, int depth)
{
	size_t i;

	if (!n || depth > ANALYSIS_MAX_DEPTH)
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR && n->bool_expr) {
		if (n->bool_expr->boolop != PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR)
			return;
		for (i = 0; i < n->bool_expr->n_args; i++)
			walk_quals(out, n->bool_expr->args[i], depth + 1);
	} else if (n->node_case == PG_QUERY__NODE__NODE_A_EXPR && n->a_expr) {
		walk_aexpr(out, n->a_expr);
	}
}

/* FROM items: tables (joined or not); subqueries and functions add none. */
static void
walk_from(struct idxcols *out, const PgQuery__Node *n, int depth)
{
	if (!n || depth > ANALYSIS_MAX_DEPTH)
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_RANGE_VAR && n->range_var) {
		add_rel(out, n->range_var);
	} else if (n->node_case == PG_QUERY__NODE__NODE_JOIN_EXPR &&
		   n->join_expr) {
		walk_from(out, n->join_expr->larg, depth + 1);
		walk_from(out, n->join_expr->rarg, depth + 1);
	}
}

/* ON clauses once every table of the FROM list is known. */
static void
walk_join_quals(struct idxcols *out, const PgQuery__Node *n, int depth)
{
	if (!n || depth > ANALYSIS_MAX_DEPTH ||
	    n->node_case != PG_QUERY__NODE__NODE_JOIN_EXPR || !n->join_expr)
		return;
	walk_join_quals(out, n->join_expr->larg, depth + 1);
	walk_join_quals(out, n->join_expr->rarg, depth + 1);
	walk_quals(out, n->join_expr->quals, 0);
}

static void
read_offset(struct idxcols *out, const PgQuery__Node *n)
{
	const PgQuery__AConst *c;

	if (n && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST &&
	    n->type_cast)
		n = n->type_cast->arg;
	if (!n)
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_PARAM_REF) {
		out->offset_param = true;
		return;
	}
	if (n->node_case != PG_QUERY__NODE__NODE_A_CONST || !n->a_const)
		return;
	c = n->a_const;
	if (c->val_case == PG_QUERY__A__CONST__VAL_IVAL && c->ival)
		out->offset = c->ival->ival;
	else if (c->val_case == PG_QUERY__A__CONST__VAL_FVAL && c->fval &&
		 c->fval->fval)	/* beyond int32 */
		out->offset = strtoll(c->fval->fval, NULL, 10);
}

static void
walk_select(struct idxcols *out, const PgQuery__SelectStmt *s)
{
	const PgQuery__ColumnRef *cr;
	size_t i;

	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE || !s->n_from_clause)
		return;
	out->is_select = true;
	for (i = 0; i < s->n_from_clause; i++)
		walk_from(out, s->from_clause[i], 0);
	for (i = 0; i < s->n_from_clause; i++)
		walk_join_quals(out, s->from_clause[i], 0);
	walk_quals(out, s->where_clause, 0);
	for (i = 0; i < s->n_sort_clause; i++) {
		const PgQuery__Node *n = s->sort_clause[i];

		if (n->node_case == PG_QUERY__NODE__NODE_SORT_BY &&
		    n->sort_by && (cr = column_of(n->sort_by->node)))
			add_col(out, cr, IDXCOLS_ORDER);
	}
	read_offset(out, s->limit_offset);
}

static void
set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

int
idxcols_parse(const char *sql, struct idxcols *out, char *err,
	      size_t errlen)
{
	PgQueryProtobufParseResult pr;
	PgQuery__ParseResult *tree;
	const PgQuery__Node *top;

	memset(out, 0, sizeof(*out));
	out->offset = -1;
	if (analysis_too_complex(sql)) {
		set_err(err, errlen, "statement too complex to analyse");
		return -1;
	}
	pr = pg_query_parse_protobuf(sql);
	if (pr.error) {
		set_err(err, errlen, pr.error->message ? pr.error->message :
							 "syntax error");
		pg_query_free_protobuf_parse_result(pr);
		return -1;
	}
	tree = pg_query__parse_result__unpack(
		NULL, pr.parse_tree.len, (const uint8_t *)pr.parse_tree.data);
	pg_query_free_protobuf_parse_result(pr);
	if (!tree) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	top = tree->n_stmts == 1 && tree->stmts[0] ? tree->stmts[0]->stmt :
						      NULL;
	if (top && top->node_case == PG_QUERY__NODE__NODE_SELECT_STMT &&
	    top->select_stmt)
		walk_select(out, top->select_stmt);
	pg_query__parse_result__free_unpacked(tree, NULL);
	return 0;
}

const char *
idxcols_role_name(enum idxcols_role role)
{
	static const char *const names[] = { "eq", "join", "range", "order" };

	if ((unsigned)role < sizeof(names) / sizeof(*names))
		return names[role];
	return "?";
}
