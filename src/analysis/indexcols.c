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

/*
 * One query being read: the statement, or a subquery or CTE body in it.
 * Its tables and columns carry its id; a column reference is looked up in
 * its own query first, then in the queries around it (correlation).
 */
struct level {
	struct idxcols *out;
	int id;
	const PgQuery__WithClause *with;	/* its WITH: CTE names */
	const struct level *up;			/* the query around it */
};

/* A WITH name in scope: a reference to it is not a table. */
static bool
is_cte(const struct level *lv, const char *name)
{
	size_t i;

	for (; lv; lv = lv->up)
		for (i = 0; lv->with && i < lv->with->n_ctes; i++) {
			const PgQuery__Node *n = lv->with->ctes[i];

			if (n && n->node_case ==
				     PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR &&
			    n->common_table_expr &&
			    n->common_table_expr->ctename &&
			    strcmp(n->common_table_expr->ctename, name) == 0)
				return true;
		}
	return false;
}

static void
add_rel(const struct level *lv, const PgQuery__RangeVar *rv)
{
	struct idxcols *out = lv->out;
	struct idxcols_rel *r;

	if (out->n_rels == IDXCOLS_MAX_RELS || !rv || !rv->relname ||
	    ((!rv->schemaname || !rv->schemaname[0]) &&
	     is_cte(lv, rv->relname)))
		return;
	r = &out->rels[out->n_rels++];
	copy_name(r->schema, rv->schemaname);
	copy_name(r->name, rv->relname);
	copy_name(r->alias, rv->alias && rv->alias->aliasname &&
				    rv->alias->aliasname[0] ?
			    rv->alias->aliasname : rv->relname);
	r->query = lv->id;
}

/* The rel of query 'id' that 'f' (1 to 3 name parts) names: -2 none, -3
 * several (Postgres refuses it). */
static int
find_rel(const struct idxcols *out, int id, const char *const *f,
	 size_t n_fields)
{
	int r, hit = -2;

	for (r = 0; r < out->n_rels; r++) {
		const struct idxcols_rel *rel = &out->rels[r];

		if (rel->query != id)
			continue;
		if (n_fields == 2 ? strcmp(rel->alias, f[0]) != 0 :
		    (strcmp(rel->schema, f[0]) != 0 ||
		     strcmp(rel->name, f[1]) != 0 ||
		     strcmp(rel->alias, rel->name) != 0))
			continue;
		if (hit != -2)
			return -3;
		hit = r;
	}
	return hit;
}

/* The rel a column reference names, -1 if unqualified among several of
 * its query, -2 if it names none of ours (a subquery's alias, t.*, ...). */
static int
resolve(const struct level *lv, const PgQuery__ColumnRef *cr,
	const char **col)
{
	const struct idxcols *out = lv->out;
	const char *f[3];
	size_t i;
	int r, hit = -2, n = 0;

	if (cr->n_fields < 1 || cr->n_fields > 3)
		return -2;
	for (i = 0; i < cr->n_fields; i++)
		if (!(f[i] = node_str(cr->fields[i])))
			return -2;
	*col = f[cr->n_fields - 1];
	if (cr->n_fields == 1) {
		for (r = 0; r < out->n_rels; r++)
			if (out->rels[r].query == lv->id) {
				hit = r;
				n++;
			}
		return n > 1 ? -1 : hit;
	}
	for (; lv; lv = lv->up) {
		hit = find_rel(out, lv->id, f, cr->n_fields);
		if (hit != -2)
			return hit < 0 ? -2 : hit;
	}
	return -2;
}

static void
add_col(const struct level *lv, const PgQuery__ColumnRef *cr,
	enum idxcols_role role)
{
	struct idxcols *out = lv->out;
	const char *name = NULL;
	int rel = resolve(lv, cr, &name), i;
	struct idxcols_col *c;

	if (rel == -2 || !name || strlen(name) >= ANALYSIS_NAME_MAX)
		return;
	for (i = 0; i < out->n_cols; i++) {
		c = &out->cols[i];
		if (c->rel == rel && c->role == role &&
		    (rel >= 0 || c->query == lv->id) &&
		    strcmp(c->name, name) == 0)
			return;
	}
	if (out->n_cols == IDXCOLS_MAX_COLS)
		return;
	c = &out->cols[out->n_cols++];
	c->rel = rel;
	c->role = role;
	c->query = lv->id;
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
walk_op(const struct level *lv, const PgQuery__AExpr *e)
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
		if (eq && resolve(lv, l, &ln) != resolve(lv, r, &rn)) {
			add_col(lv, l, IDXCOLS_JOIN);
			add_col(lv, r, IDXCOLS_JOIN);
		}
		return;
	}
	if (l && is_value(e->rexpr, 0))
		add_col(lv, l, eq ? IDXCOLS_EQ : IDXCOLS_RANGE);
	else if (r && is_value(e->lexpr, 0))
		add_col(lv, r, eq ? IDXCOLS_EQ : IDXCOLS_RANGE);
}

static void
walk_aexpr(const struct level *lv, const PgQuery__AExpr *e)
{
	const PgQuery__ColumnRef *l = column_of(e->lexpr);
	const char *op = op_name(e);

	switch (e->kind) {
	case PG_QUERY__A__EXPR__KIND__AEXPR_OP:
		walk_op(lv, e);
		break;
	case PG_QUERY__A__EXPR__KIND__AEXPR_IN:	/* col IN (...) */
		if (l && op && strcmp(op, "=") == 0)
			add_col(lv, l, IDXCOLS_EQ);
		break;
	case PG_QUERY__A__EXPR__KIND__AEXPR_BETWEEN:
		if (l)
			add_col(lv, l, IDXCOLS_RANGE);
		break;
	default:
		break;
	}
}

static void walk_query(const struct level *up, const PgQuery__Node *n,
		       int depth);

/*
 * The conjuncts of a WHERE or ON clause; EXISTS / NOT EXISTS / IN
 * subqueries among them are read as queries of their own (their
 * correlation columns are join columns, col IN (SELECT ...) an equality).
 */
static void
walk_quals(const struct level *lv, const PgQuery__Node *n, int depth)
{
	const PgQuery__BoolExpr *b;
	const PgQuery__SubLink *sl;
	const PgQuery__ColumnRef *cr;
	size_t i;

	if (!n || depth > ANALYSIS_MAX_DEPTH)
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
	    (b = n->bool_expr)) {
		if (b->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR)
			for (i = 0; i < b->n_args; i++)
				walk_quals(lv, b->args[i], depth + 1);
		else if (b->boolop == PG_QUERY__BOOL_EXPR_TYPE__NOT_EXPR &&
			 b->n_args == 1 && b->args[0] &&
			 b->args[0]->node_case ==
				 PG_QUERY__NODE__NODE_SUB_LINK)
			walk_quals(lv, b->args[0], depth + 1);
	} else if (n->node_case == PG_QUERY__NODE__NODE_A_EXPR && n->a_expr) {
		walk_aexpr(lv, n->a_expr);
	} else if (n->node_case == PG_QUERY__NODE__NODE_SUB_LINK &&
		   (sl = n->sub_link)) {
		if (sl->sub_link_type == PG_QUERY__SUB_LINK_TYPE__EXISTS_SUBLINK)
			walk_query(lv, sl->subselect, depth + 1);
		else if (sl->sub_link_type ==
			 PG_QUERY__SUB_LINK_TYPE__ANY_SUBLINK) {
			if ((cr = column_of(sl->testexpr)))
				add_col(lv, cr, IDXCOLS_EQ);
			walk_query(lv, sl->subselect, depth + 1);
		}
	}
}

/* FROM items: tables (joined or not), and subqueries read as their own
 * queries; functions add none. */
static void
walk_from(const struct level *lv, const PgQuery__Node *n, int depth)
{
	if (!n || depth > ANALYSIS_MAX_DEPTH)
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_RANGE_VAR && n->range_var) {
		add_rel(lv, n->range_var);
	} else if (n->node_case == PG_QUERY__NODE__NODE_JOIN_EXPR &&
		   n->join_expr) {
		walk_from(lv, n->join_expr->larg, depth + 1);
		walk_from(lv, n->join_expr->rarg, depth + 1);
	} else if (n->node_case == PG_QUERY__NODE__NODE_RANGE_SUBSELECT &&
		   n->range_subselect) {
		walk_query(lv, n->range_subselect->subquery, depth + 1);
	}
}

/* ON clauses once every table of the FROM list is known. */
static void
walk_join_quals(const struct level *lv, const PgQuery__Node *n, int depth)
{
	if (!n || depth > ANALYSIS_MAX_DEPTH ||
	    n->node_case != PG_QUERY__NODE__NODE_JOIN_EXPR || !n->join_expr)
		return;
	walk_join_quals(lv, n->join_expr->larg, depth + 1);
	walk_join_quals(lv, n->join_expr->rarg, depth + 1);
	walk_quals(lv, n->join_expr->quals, depth + 1);
}

/* A FROM (or USING) list and its ON clauses, then a WHERE clause. */
static void
walk_tables(const struct level *lv, PgQuery__Node *const *from,
	    size_t n_from, const PgQuery__Node *where, int depth)
{
	size_t i;

	for (i = 0; i < n_from; i++)
		walk_from(lv, from[i], depth + 1);
	for (i = 0; i < n_from; i++)
		walk_join_quals(lv, from[i], depth + 1);
	walk_quals(lv, where, depth + 1);
}

static void
walk_ctes(const struct level *lv, const PgQuery__WithClause *with, int depth)
{
	size_t i;

	for (i = 0; with && i < with->n_ctes; i++)
		if (with->ctes[i] && with->ctes[i]->node_case ==
			     PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR &&
		    with->ctes[i]->common_table_expr)
			walk_query(lv, with->ctes[i]->common_table_expr->ctequery,
				   depth + 1);
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

static void walk_arm(const struct level *up, const PgQuery__SelectStmt *s,
		     int depth);

/* One SELECT in level lv (which takes its WITH); the arms of a UNION and
 * the like are each read as a query of their own. */
static void
walk_select(struct level *lv, const PgQuery__SelectStmt *s, int depth)
{
	const PgQuery__ColumnRef *cr;
	size_t i;

	lv->with = s->with_clause;
	walk_ctes(lv, s->with_clause, depth);
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE) {
		if (s->larg)
			walk_arm(lv, s->larg, depth + 1);
		if (s->rarg)
			walk_arm(lv, s->rarg, depth + 1);
		return;
	}
	walk_tables(lv, s->from_clause, s->n_from_clause, s->where_clause,
		    depth);
	for (i = 0; i < s->n_sort_clause; i++) {
		const PgQuery__Node *n = s->sort_clause[i];

		if (n->node_case == PG_QUERY__NODE__NODE_SORT_BY &&
		    n->sort_by && (cr = column_of(n->sort_by->node)))
			add_col(lv, cr, IDXCOLS_ORDER);
	}
}

static void
walk_arm(const struct level *up, const PgQuery__SelectStmt *s, int depth)
{
	struct level lv = { up->out, 0, NULL, up };

	if (depth > ANALYSIS_MAX_DEPTH)
		return;
	lv.id = ++up->out->n_queries;
	walk_select(&lv, s, depth);
}

/* The rows a write finds in level lv (which takes its WITH): its target
 * and its other tables under its WHERE, like a SELECT's. */
static void
walk_found(struct level *lv, const PgQuery__WithClause *with,
	   const PgQuery__RangeVar *target, PgQuery__Node *const *tables,
	   size_t ntables, const PgQuery__Node *where, int depth)
{
	lv->with = with;
	walk_ctes(lv, with, depth);
	add_rel(lv, target);
	walk_tables(lv, tables, ntables, where, depth);
}

/* UPDATE ... FROM ... WHERE, DELETE ... USING ... WHERE. */
static void
walk_write(struct level *lv, const PgQuery__Node *n, int depth)
{
	const PgQuery__UpdateStmt *u;
	const PgQuery__DeleteStmt *d;

	if (n->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT &&
	    (u = n->update_stmt))
		walk_found(lv, u->with_clause, u->relation, u->from_clause,
			   u->n_from_clause, u->where_clause, depth);
	else if (n->node_case == PG_QUERY__NODE__NODE_DELETE_STMT &&
		 (d = n->delete_stmt))
		walk_found(lv, d->with_clause, d->relation, d->using_clause,
			   d->n_using_clause, d->where_clause, depth);
}

/* A SELECT, UPDATE or DELETE read in level lv; anything else adds none. */
static void
walk_statement(struct level *lv, const PgQuery__Node *n, int depth)
{
	if (n->node_case == PG_QUERY__NODE__NODE_SELECT_STMT &&
	    n->select_stmt)
		walk_select(lv, n->select_stmt, depth);
	else
		walk_write(lv, n, depth);
}

/* A nested query (subquery, CTE body), read in a level of its own. */
static void
walk_query(const struct level *up, const PgQuery__Node *n, int depth)
{
	struct level lv = { up->out, 0, NULL, up };

	if (!n || depth > ANALYSIS_MAX_DEPTH)
		return;
	lv.id = ++up->out->n_queries;
	walk_statement(&lv, n, depth);
}

/* The statement: one plain SELECT with a FROM, an UPDATE or a DELETE. */
static void
read_top(struct idxcols *out, const PgQuery__Node *top)
{
	struct level lv = { out, 0, NULL, NULL };
	const PgQuery__SelectStmt *s = NULL;

	if (top->node_case == PG_QUERY__NODE__NODE_SELECT_STMT &&
	    (s = top->select_stmt)) {
		if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE ||
		    !s->n_from_clause)
			return;
		out->is_select = true;
	} else if ((top->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT &&
		    top->update_stmt) ||
		   (top->node_case == PG_QUERY__NODE__NODE_DELETE_STMT &&
		    top->delete_stmt)) {
		out->is_write = true;
	} else {
		return;
	}
	walk_statement(&lv, top, 0);
	if (s)
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
	if (top)
		read_top(out, top);
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
