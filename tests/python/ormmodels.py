"""Mapped classes for the ORM cache tests (module level: cached instances are pickled,
which needs importable classes).  SQLAlchemy 1.4 spelling, valid on 2.0 too."""
from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()

SCHEMA = """
CREATE TABLE IF NOT EXISTS orm_users (id serial PRIMARY KEY, email text NOT NULL,
    name text, active boolean NOT NULL DEFAULT true, version integer NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS orm_addresses (id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES orm_users(id) ON DELETE CASCADE, email text NOT NULL);
CREATE TABLE IF NOT EXISTS orm_products (id serial PRIMARY KEY, name text NOT NULL,
    price integer NOT NULL);
CREATE TABLE IF NOT EXISTS orm_tags (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS orm_product_tags (product_id integer REFERENCES orm_products(id)
    ON DELETE CASCADE, tag_id integer REFERENCES orm_tags(id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, tag_id));
"""

product_tags = Table("orm_product_tags", Base.metadata,
                     Column("product_id", ForeignKey("orm_products.id"), primary_key=True),
                     Column("tag_id", ForeignKey("orm_tags.id"), primary_key=True))


class User(Base):
    __tablename__ = "orm_users"
    id = Column(Integer, primary_key=True)
    email = Column(String, nullable=False)
    name = Column(String)
    active = Column(Boolean, nullable=False, default=True)
    version = Column(Integer, nullable=False, default=0)
    addresses = relationship("Address", back_populates="user", order_by="Address.id")


class Address(Base):
    __tablename__ = "orm_addresses"
    id = Column(Integer, primary_key=True)
    user_id = Column(ForeignKey("orm_users.id"), nullable=False)
    email = Column(String, nullable=False)
    user = relationship("User", back_populates="addresses", lazy="joined")  # mapper-level


class Product(Base):
    """Mapper-level eager loading (lazy='selectin' / 'joined')."""
    __tablename__ = "orm_products"
    id = Column(Integer, primary_key=True)
    name = Column(String, nullable=False)
    price = Column(Integer, nullable=False)
    tags = relationship("Tag", secondary=product_tags, lazy="selectin", order_by="Tag.id")


class Tag(Base):
    __tablename__ = "orm_tags"
    id = Column(Integer, primary_key=True)
    name = Column(String, nullable=False)
